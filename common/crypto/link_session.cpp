#include "common/crypto/link_session.hpp"

#include <algorithm>
#include <cassert>
#include <string>
#include <string_view>

#include "common/crypto/aead.hpp"
#include "common/crypto/encoding.hpp"
#include "common/crypto/hash.hpp"

namespace thor::crypto {
namespace {

constexpr std::string_view kMagic = "THOR";
constexpr std::uint8_t kVersion = 2;
constexpr std::string_view kTranscriptLabel = "thor-link-v2";
constexpr std::string_view kResponderSigLabel = "thor-link-v2 responder";
constexpr std::string_view kInitiatorSigLabel = "thor-link-v2 initiator";
constexpr std::string_view kKeysLabel = "thor-link-v2 keys";

constexpr std::size_t kRecordHeaderSize = 2;
constexpr std::size_t kRecordTagSize = kAeadTagSize;
constexpr std::size_t kMaxRecordPlaintext = kLinkMaxCellsPerRecord * kCellSize;
constexpr std::size_t kMaxRecordBody = kMaxRecordPlaintext + kRecordTagSize;  // what len may say
constexpr std::size_t kAuthAnonymousSize = 1;
constexpr std::size_t kAuthRelaySize = 1 + 32 + 64;
// Enough of the hello to check magic and version before waiting for the rest.
constexpr std::size_t kHelloProbeSize = kMagic.size() + 1;

static_assert(kMaxRecordBody <= 0xffff, "a record's length must fit its u16 header");
static_assert(kLinkHelloSize == kMagic.size() + 1 + 1 + 32);
static_assert(kLinkResponseSize == 32 + 1 + 32 + 64);
// What the responder signs: label | offered | chosen | e_i | e_r.
constexpr std::size_t kResponderSignedSize = kResponderSigLabel.size() + 2 + 64;

bool is_single_cipher(std::uint8_t bits) {
  return bits == cipher_bit(LinkCipher::chacha20_poly1305) || bits == cipher_bit(LinkCipher::aes256_gcm);
}

std::string cipher_set_string(LinkCipherSet set) {
  std::string s;
  for (LinkCipher c : {LinkCipher::aes256_gcm, LinkCipher::chacha20_poly1305})
    if (set & cipher_bit(c)) s += (s.empty() ? "" : ", ") + to_string(c);
  return s.empty() ? "none" : s;
}

}  // namespace

struct LinkSession::State {
  enum class Role { initiator, responder };
  // What the next bytes from the peer are.
  enum class Phase { hello, response, auth_record, records, failed };

  Role role = Role::initiator;
  Phase phase = Phase::hello;
  std::optional<IdentityKey> own;     // the responder's key; the initiator's when it is a relay
  Ed25519Public expected_responder;   // initiator only
  X25519Keypair ephemeral;
  X25519Public initiator_ephemeral;   // e_i, kept for the responder's signature and transcript
  LinkCipherSet own_ciphers = 0;      // what this side offers (initiator) or accepts (responder)
  LinkCipherSet offered = 0;          // the initiator's offer, as the hello carried it
  LinkCipher cipher = LinkCipher::chacha20_poly1305;  // the responder's choice
  std::array<std::uint8_t, 32> transcript{};  // th
  RecordAead sender, receiver;
  std::uint64_t send_n = 0, recv_n = 0;
  std::optional<Ed25519Public> peer;
  bool established = false;
  std::string error;

  // Bytes ready to send. May end with an open record: its header and the plaintext cells appended
  // so far, sealed in place when it fills or when output is taken (so queued cells share records).
  Bytes out;
  std::size_t open_record = 0;  // offset of the open record's header in out
  std::size_t open_cells = 0;   // 0: no open record
  Bytes held;                   // cells queued before the link is established
  Bytes discard;                // where queue_cell_slot() puts cells after a failure
  Bytes in;                     // one incomplete unit (handshake message or record) from the peer
  Bytes plain;                  // plaintext of a record decrypted straight from the caller's bytes

  Status fail(std::string message) {
    phase = Phase::failed;
    error = std::move(message);
    // Nothing more goes out: in particular not an open record's cells, which are still plaintext.
    out.clear();
    open_cells = 0;
    in.clear();
    held.clear();
    return Error{error};
  }

  // ---- sending -----------------------------------------------------------------------------

  void close_record() {
    if (open_cells == 0) return;
    const std::size_t body = open_cells * kCellSize;
    const std::size_t len = body + kRecordTagSize;
    out[open_record] = static_cast<std::uint8_t>(len >> 8);
    out[open_record + 1] = static_cast<std::uint8_t>(len);
    out.resize(out.size() + kRecordTagSize);
    MutableByteView record = MutableByteView(out).subspan(open_record);
    sender.seal(send_n++, record.first(kRecordHeaderSize), record.subspan(kRecordHeaderSize, body),
                record.subspan(kRecordHeaderSize + body));
    open_cells = 0;
  }

  void append_cell(ByteView cell) {
    MutableByteView slot = cell_slot();
    std::copy(cell.begin(), cell.end(), slot.begin());
  }

  // Room for the next cell in the open record. A full record is sealed when the next cell comes or
  // when output is taken, so that the caller can fill the slot first.
  MutableByteView cell_slot() {
    if (open_cells == kLinkMaxCellsPerRecord) close_record();
    if (open_cells == 0) {
      open_record = out.size();
      out.resize(out.size() + kRecordHeaderSize);
    }
    const std::size_t at = out.size();
    out.resize(at + kCellSize);
    ++open_cells;
    return MutableByteView(out).subspan(at, kCellSize);
  }

  // A whole record around a small plaintext (the authentication record).
  void seal_record(ByteView plaintext) {
    close_record();
    const std::size_t start = out.size();
    const std::size_t len = plaintext.size() + kRecordTagSize;
    Writer(out).u16(static_cast<std::uint16_t>(len)).bytes(plaintext).zeros(kRecordTagSize);
    MutableByteView record = MutableByteView(out).subspan(start);
    sender.seal(send_n++, record.first(kRecordHeaderSize), record.subspan(kRecordHeaderSize, plaintext.size()),
                record.subspan(kRecordHeaderSize + plaintext.size()));
  }

  void become_established() {
    established = true;
    phase = Phase::records;
    for (std::size_t off = 0; off < held.size(); off += kCellSize)
      append_cell(ByteView(held).subspan(off, kCellSize));
    Bytes().swap(held);
  }

  // ---- handshake -----------------------------------------------------------------------------

  // th and the two record keys from the DH result. False for a low-order peer point.
  bool derive_keys(const X25519Public& e_i, const X25519Public& e_r, const Ed25519Public& id_r,
                   const X25519Public& peer_ephemeral) {
    auto shared = x25519(ephemeral.secret, peer_ephemeral);
    if (!shared) return false;
    const std::uint8_t negotiated[2] = {offered, cipher_bit(cipher)};
    transcript = blake2b_256({as_bytes(kTranscriptLabel), ByteView(negotiated), e_i.view(), e_r.view(), id_r.view()});
    SymmetricKey prk;
    prk.bytes = blake2b_256({shared->view()}, ByteView(transcript));
    std::array<std::uint8_t, 64> keys{};
    kdf_expand(prk, kKeysLabel, MutableByteView(keys));
    SymmetricKey i2r, r2i;
    std::copy_n(keys.begin(), 32, i2r.bytes.begin());
    std::copy_n(keys.begin() + 32, 32, r2i.bytes.begin());
    wipe(MutableByteView(keys));
    sender = RecordAead(cipher, role == Role::initiator ? i2r : r2i);
    receiver = RecordAead(cipher, role == Role::initiator ? r2i : i2r);
    wipe(MutableByteView(i2r.bytes));
    wipe(MutableByteView(r2i.bytes));
    return true;
  }

  Status on_hello(ByteView hello) {
    Reader r(hello);
    r.skip(kMagic.size() + 1);  // checked by unit_size
    r.u8(offered);
    r.array(initiator_ephemeral.bytes);
    // The fastest cipher both sides have; the choice is signed below, with the offer it answers.
    const LinkCipherSet common = offered & own_ciphers;
    if (common & cipher_bit(LinkCipher::aes256_gcm)) {
      cipher = LinkCipher::aes256_gcm;
    } else if (common & cipher_bit(LinkCipher::chacha20_poly1305)) {
      cipher = LinkCipher::chacha20_poly1305;
    } else {
      return fail("link: no cipher in common: the initiator offers " + cipher_set_string(offered) +
                  ", this node accepts " + cipher_set_string(own_ciphers));
    }
    const Ed25519Public& id_r = own->public_key();
    if (!derive_keys(initiator_ephemeral, ephemeral.public_key, id_r, initiator_ephemeral))
      return fail("link: initiator's ephemeral key is a low-order point");
    std::array<std::uint8_t, kResponderSignedSize> signed_msg{};
    SpanWriter(signed_msg)
        .bytes(kResponderSigLabel)
        .u8(offered)
        .u8(cipher_bit(cipher))
        .bytes(initiator_ephemeral.view())
        .bytes(ephemeral.public_key.view());
    Ed25519Signature sig = own->sign(ByteView(signed_msg));
    Writer(out).bytes(ephemeral.public_key.view()).u8(cipher_bit(cipher)).bytes(id_r.view()).bytes(sig.view());
    phase = Phase::auth_record;
    return {};
  }

  Status on_response(ByteView response) {
    Reader r(response);
    X25519Public e_r;
    std::uint8_t chosen = 0;
    Ed25519Public id_r;
    Ed25519Signature sig;
    r.array(e_r.bytes);
    r.u8(chosen);
    r.array(id_r.bytes);
    r.array(sig.bytes);
    // Signed over our own offer, so an offer changed on the way (to force a weaker choice) fails here.
    std::array<std::uint8_t, kResponderSignedSize> signed_msg{};
    SpanWriter(signed_msg)
        .bytes(kResponderSigLabel)
        .u8(offered)
        .u8(chosen)
        .bytes(ephemeral.public_key.view())
        .bytes(e_r.view());
    if (!verify(id_r, ByteView(signed_msg), sig))
      return fail("link: responder's signature does not verify (it claimed identity " + fingerprint(id_r) + ")");
    if (!is_single_cipher(chosen) || (chosen & offered) == 0)
      return fail("link: responder chose cipher 0x" + to_hex(ByteView(&chosen, 1)) + ", which is not one we offered (" +
                  cipher_set_string(offered) + ")");
    cipher = static_cast<LinkCipher>(chosen);
    if (!(id_r == expected_responder))
      return fail("link: responder proved identity " + fingerprint(id_r) + ", expected " + fingerprint(expected_responder));
    if (!derive_keys(ephemeral.public_key, e_r, id_r, e_r))
      return fail("link: responder's ephemeral key is a low-order point");

    // The auth record goes out right away, followed in the same output by any held cells.
    std::array<std::uint8_t, kAuthRelaySize> auth{};
    std::size_t auth_size = kAuthAnonymousSize;
    if (own) {
      std::array<std::uint8_t, kInitiatorSigLabel.size() + 32> to_sign{};
      SpanWriter(to_sign).bytes(kInitiatorSigLabel).bytes(ByteView(transcript));
      Ed25519Signature mine = own->sign(ByteView(to_sign));
      SpanWriter(auth).u8(1).bytes(own->public_key().view()).bytes(mine.view());
      auth_size = kAuthRelaySize;
    }
    seal_record(ByteView(auth).first(auth_size));
    peer = id_r;
    become_established();
    return {};
  }

  Status on_auth(ByteView plaintext) {
    Reader r(plaintext);
    std::uint8_t kind = 0;
    r.u8(kind);
    if (kind == 0 && plaintext.size() == kAuthAnonymousSize) {
      become_established();
      return {};
    }
    if (kind == 1 && plaintext.size() == kAuthRelaySize) {
      Ed25519Public id_i;
      Ed25519Signature sig;
      r.array(id_i.bytes);
      r.array(sig.bytes);
      std::array<std::uint8_t, kInitiatorSigLabel.size() + 32> signed_msg{};
      SpanWriter(signed_msg).bytes(kInitiatorSigLabel).bytes(ByteView(transcript));
      if (!verify(id_i, ByteView(signed_msg), sig))
        return fail("link: initiator's signature does not verify (it claimed identity " + fingerprint(id_i) + ")");
      peer = id_i;
      become_established();
      return {};
    }
    return fail("link: malformed authentication record (kind " + std::to_string(kind) + ", " +
                std::to_string(plaintext.size()) + " bytes)");
  }

  // ---- receiving -----------------------------------------------------------------------------

  // How many bytes the next unit needs before its size is known.
  std::size_t probe_size() const {
    switch (phase) {
      case Phase::hello: return kHelloProbeSize;
      case Phase::response: return kLinkResponseSize;
      default: return kRecordHeaderSize;
    }
  }

  // The size of the unit that starts with head: 0 while head is too short to tell, an error when
  // what is there is already wrong (checked as early as possible, so garbage fails fast).
  Result<std::size_t> unit_size(ByteView head) const {
    switch (phase) {
      case Phase::hello: {
        const std::size_t n = std::min(head.size(), kMagic.size());
        if (!std::equal(head.begin(), head.begin() + static_cast<std::ptrdiff_t>(n), as_bytes(kMagic).begin()))
          return Error{"link: bad magic: the peer does not speak thor-link"};
        if (head.size() < kHelloProbeSize) return std::size_t{0};
        if (head[kMagic.size()] != kVersion)
          return Error{"link: unsupported link version " + std::to_string(head[kMagic.size()]) + " (we speak " +
                       std::to_string(kVersion) + ")"};
        return kLinkHelloSize;
      }
      case Phase::response: return kLinkResponseSize;
      case Phase::auth_record:
      case Phase::records: {
        if (head.size() < kRecordHeaderSize) return std::size_t{0};
        const std::size_t len = (std::size_t(head[0]) << 8) | head[1];
        if (phase == Phase::auth_record) {
          if (len != kAuthAnonymousSize + kRecordTagSize && len != kAuthRelaySize + kRecordTagSize)
            return Error{"link: expected the initiator's authentication record (" +
                         std::to_string(kAuthAnonymousSize + kRecordTagSize) + " or " +
                         std::to_string(kAuthRelaySize + kRecordTagSize) + " bytes), got a record of " +
                         std::to_string(len) + " bytes"};
        } else {
          if (len > kMaxRecordBody)
            return Error{"link: record of " + std::to_string(len) + " bytes exceeds the maximum of " +
                         std::to_string(kMaxRecordBody)};
          if (len < kRecordTagSize + kCellSize || (len - kRecordTagSize) % kCellSize != 0)
            return Error{"link: record of " + std::to_string(len) + " bytes does not hold whole cells"};
        }
        return kRecordHeaderSize + len;
      }
      case Phase::failed: break;
    }
    return Error{error};
  }

  // Opens a record: plaintext goes to dest (which may be the ciphertext itself: in place).
  Status open_record_into(ByteView record, std::uint8_t* dest, ByteView& plaintext) {
    const std::size_t text = record.size() - kRecordHeaderSize - kRecordTagSize;
    if (!receiver.open(recv_n, record.first(kRecordHeaderSize), record.subspan(kRecordHeaderSize, text),
                       record.subspan(kRecordHeaderSize + text), MutableByteView(dest, text)))
      return fail("link: record authentication failed (record " + std::to_string(recv_n) +
                  "): corrupted or forged bytes on the link");
    ++recv_n;
    plaintext = ByteView(dest, text);
    return {};
  }

  // One whole unit. in_place: where the record's ciphertext lies when it is in our own buffer, so
  // it is decrypted there; nullptr when it is the caller's (const) bytes.
  Status on_unit(ByteView unit, std::uint8_t* in_place, const std::function<void(ByteView)>& on_cell) {
    switch (phase) {
      case Phase::hello: return on_hello(unit);
      case Phase::response: return on_response(unit);
      case Phase::auth_record:
      case Phase::records: {
        std::uint8_t* dest = in_place;
        if (!dest) {
          if (plain.size() < kMaxRecordPlaintext) plain.resize(kMaxRecordPlaintext);
          dest = plain.data();
        }
        ByteView text;
        if (Status st = open_record_into(unit, dest, text); !st) return st;
        if (phase == Phase::auth_record) return on_auth(text);
        for (std::size_t off = 0; off < text.size(); off += kCellSize) on_cell(text.subspan(off, kCellSize));
        return {};
      }
      case Phase::failed: break;
    }
    return Error{error};
  }

  Status receive(ByteView data, const std::function<void(ByteView)>& on_cell) {
    if (phase == Phase::failed) return Error{error};
    while (!data.empty()) {
      if (in.empty()) {
        // Fast path: whole units straight from the caller's bytes, no buffering.
        auto size = unit_size(data);
        if (!size) return fail(size.error());
        if (*size != 0 && data.size() >= *size) {
          if (Status st = on_unit(data.first(*size), nullptr, on_cell); !st) return st;
          data = data.subspan(*size);
          continue;
        }
        in.assign(data.begin(), data.end());
        return {};
      }
      auto size = unit_size(in);
      if (!size) return fail(size.error());
      const std::size_t want = *size != 0 ? *size : probe_size();
      const std::size_t take = std::min(data.size(), want - in.size());
      in.insert(in.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(take));
      data = data.subspan(take);
      if (*size == 0) {
        // Now maybe long enough to know the size (and to refuse it).
        auto known = unit_size(in);
        if (!known) return fail(known.error());
        continue;
      }
      if (in.size() == *size) {
        Status st = on_unit(in, in.data() + kRecordHeaderSize, on_cell);
        in.clear();
        if (!st) return st;
      }
    }
    return {};
  }
};

LinkSession::LinkSession(std::unique_ptr<State> s) : s_(std::move(s)) {}
LinkSession::LinkSession(LinkSession&&) noexcept = default;
LinkSession& LinkSession::operator=(LinkSession&&) noexcept = default;
LinkSession::~LinkSession() = default;

LinkSession LinkSession::initiator(const Ed25519Public& expected_responder, const IdentityKey* own, Rng& rng,
                                   LinkCipherSet ciphers) {
  init();
  assert(ciphers != 0 && (ciphers & ~kAllLinkCiphers) == 0);
  auto s = std::make_unique<State>();
  s->role = State::Role::initiator;
  s->own_ciphers = ciphers;
  s->offered = ciphers;
  s->phase = State::Phase::response;
  s->expected_responder = expected_responder;
  if (own) s->own = *own;
  s->ephemeral = X25519Keypair::generate(rng);
  Writer(s->out).bytes(kMagic).u8(kVersion).u8(ciphers).bytes(s->ephemeral.public_key.view());
  return LinkSession(std::move(s));
}

LinkSession LinkSession::responder(const IdentityKey& own, Rng& rng, LinkCipherSet ciphers) {
  init();
  assert(ciphers != 0 && (ciphers & ~kAllLinkCiphers) == 0);
  auto s = std::make_unique<State>();
  s->role = State::Role::responder;
  s->own_ciphers = ciphers;
  s->phase = State::Phase::hello;
  s->own = own;
  s->ephemeral = X25519Keypair::generate(rng);
  return LinkSession(std::move(s));
}

Status LinkSession::receive(ByteView data, const std::function<void(ByteView cell)>& on_cell) {
  return s_->receive(data, on_cell);
}

void LinkSession::queue_cell(ByteView cell) {
  assert(cell.size() == kCellSize);
  State& s = *s_;
  if (s.phase == State::Phase::failed) return;  // the link is closing; nothing more goes out
  if (!s.established) {
    s.held.insert(s.held.end(), cell.begin(), cell.end());
    return;
  }
  s.append_cell(cell);
}

MutableByteView LinkSession::queue_cell_slot() {
  State& s = *s_;
  if (s.phase == State::Phase::failed) {
    // The link is closing: nothing more goes out, the bytes land in a scratch cell.
    s.discard.resize(kCellSize);
    return MutableByteView(s.discard);
  }
  if (!s.established) {
    const std::size_t at = s.held.size();
    s.held.resize(at + kCellSize);
    return MutableByteView(s.held).subspan(at, kCellSize);
  }
  return s.cell_slot();
}

void LinkSession::take_output(Bytes& out) {
  State& s = *s_;
  s.close_record();
  if (out.empty()) {
    out.swap(s.out);  // hands over our buffer; the caller's (with its capacity) becomes ours
  } else {
    out.insert(out.end(), s.out.begin(), s.out.end());
  }
  s.out.clear();
}

bool LinkSession::has_output() const { return !s_->out.empty(); }

bool LinkSession::established() const { return s_->established; }

std::optional<LinkCipher> LinkSession::cipher() const {
  if (!s_->established) return std::nullopt;
  return s_->cipher;
}

std::optional<Ed25519Public> LinkSession::peer_identity() const {
  if (!s_->established) return std::nullopt;
  return s_->peer;
}

}  // namespace thor::crypto
