#include "common/link/channel.hpp"

#include <utility>
#include <vector>

#include "common/crypto/link_session.hpp"
#include "common/crypto/random.hpp"
#include "common/log.hpp"
#include "common/uv/handle.hpp"

namespace thor::link {

namespace {

// How long a closed link may keep sending what was queued before it (a final DESTROY, say) before
// the socket is dropped anyway: a peer that stopped reading must not pin the socket forever.
constexpr std::uint64_t kLingerMs = 5'000;

// Owns a connection that its Channel has let go of until its last bytes are written.
struct Linger {
  std::unique_ptr<uv::TcpConnection> conn;
  uv::Timer timer;
  explicit Linger(std::unique_ptr<uv::TcpConnection> c) : conn(std::move(c)), timer(conn->loop()) {}
};

void linger_close(std::unique_ptr<uv::TcpConnection> conn) {
  if (!conn || conn->closed()) return;
  if (conn->queued_bytes() == 0) {
    conn->close();
    return;
  }
  auto* l = new Linger(std::move(conn));
  // Either end frees the Linger; the other end is then gone with it (its handle closes).
  l->conn->set_callbacks(nullptr, [l](const std::string&) { delete l; });
  l->timer.start(kLingerMs, 0, [l] { delete l; });
  l->conn->close_after_writes();
}

class ChannelImpl final : public Channel {
 public:
  ChannelImpl(uv_loop_t* loop, std::unique_ptr<uv::TcpConnection> conn, crypto::LinkSession session,
              bool initiator, std::string peer, Callbacks callbacks, const ChannelOptions& options)
      : conn_(std::move(conn)),
        session_(std::move(session)),
        initiator_(initiator),
        peer_(std::move(peer)),
        cb_(std::move(callbacks)),
        timer_(loop),
        alive_(std::make_shared<bool>(true)) {
    uv_idle_init(loop, idle_.get());
    idle_.mark_initialized();
    idle_.get()->data = this;
    const std::uint64_t ms = options.handshake_timeout_ms;
    timer_.start(ms, 0, [this, ms] {
      if (!session_.established()) fail("link: handshake timed out after " + std::to_string(ms) + " ms");
    });
  }

  ~ChannelImpl() override {
    *alive_ = false;
    shut_down();
  }

  // Initiator: TCP connect, then the hello goes out.
  void start_connect(const HostPort& address) {
    // A failure, even one found synchronously, is reported from the loop (see fail()).
    conn_->connect(address, [this](Status st) {
      if (!st) {
        fail("link: " + st.error());
        return;
      }
      conn_->set_nodelay(true);
      start_reading();
      flush();
    });
  }

  // Responder: the connection is up; wait for the hello.
  void start_accepted() {
    conn_->set_nodelay(true);
    start_reading();
  }

  void send(const Cell& cell) override {
    if (closed_) return;
    encode_cell(cell, session_.queue_cell_slot());
    ++pending_cells_;
    if (drain_cb_ && queued_bytes() > drain_low_water_) drain_armed_ = true;
    // One record holds at most 127 cells: a full record goes out now, smaller batches at the end
    // of the loop iteration (where a pending drain is also checked).
    if (pending_cells_ >= crypto::kLinkMaxCellsPerRecord && session_.established()) flush();
    arm_idle();
  }

  std::size_t queued_bytes() const override {
    std::size_t n = pending_cells_ * kCellSize;
    if (conn_) n += conn_->queued_bytes();
    return n;
  }

  void on_drain(std::size_t low_water, std::function<void()> cb) override {
    drain_low_water_ = low_water;
    drain_cb_ = std::move(cb);
    drain_armed_ = drain_cb_ && queued_bytes() > low_water;
    // The socket's own drain covers bytes already written; cells still waiting for the end of the
    // loop iteration are covered by the check after each flush.
    if (conn_) conn_->on_drain(low_water, [this] { check_drain(); });
  }
  void pause_reading() override {
    if (conn_ && !closed_) conn_->pause_reading();
  }
  void resume_reading() override {
    if (conn_ && !closed_) conn_->resume_reading();
  }

  bool established() const override { return established_; }
  bool is_initiator() const override { return initiator_; }
  std::optional<crypto::Ed25519Public> peer_identity() const override { return session_.peer_identity(); }

  CircId allocate_circ_id(const std::function<bool(CircId)>& in_use) override {
    auto& rng = crypto::system_rng();
    // Random ids make a collision with a recently freed id (whose late cells may still arrive)
    // unlikely; after this many misses the space is as good as full.
    for (int attempt = 0; attempt < 64; ++attempt) {
      auto raw = static_cast<CircId>(rng.u64());
      CircId id = initiator_ ? (raw | kCircIdInitiatorBit) : (raw & ~kCircIdInitiatorBit);
      if (id == 0 || (in_use && in_use(id))) continue;
      return id;
    }
    return 0;
  }

  std::string peer_address() const override { return peer_; }

  void close() override {
    // No callbacks after close(), including a failure already waiting to be reported.
    cb_ = {};
    failure_.reset();
    shut_down();
  }

 private:
  void start_reading() {
    conn_->set_callbacks([this](ByteView data) { on_data(data); },
                         [this](const std::string& reason) {
                           fail(reason.empty() ? "link: peer closed the connection" : "link: connection error: " + reason);
                         });
    conn_->start_reading();
  }

  void on_data(ByteView data) {
    if (closed_) return;
    auto alive = alive_;
    std::string cell_error;
    inbox_.clear();
    Status st = session_.receive(data, [&](ByteView bytes) {
      if (!cell_error.empty()) return;
      Cell& cell = inbox_.emplace_back();
      if (Status d = decode_cell_into(bytes, cell); !d) {
        inbox_.pop_back();
        cell_error = "link: peer sent an invalid cell: " + d.error();
      }
    });
    if (!st) {
      fail(st.error());  // LinkSession says what failed ("link: ...")
      return;
    }
    // Handshake replies (and cells held until the handshake finished) go out at once.
    if (session_.has_output()) flush();
    if (closed_) return;
    if (!established_ && session_.established()) {
      established_ = true;
      timer_.stop();
      LOG_DEBUG("link established, records sealed with " << crypto::to_string(*session_.cipher()));
      if (cb_.on_established) {
        cb_.on_established();
        if (!*alive || closed_) return;
      }
    }
    // The callbacks may destroy or close this Channel: deliver from a local list.
    std::vector<Cell> cells;
    cells.swap(inbox_);
    for (auto& cell : cells) {
      if (cb_.on_cell) cb_.on_cell(cell);
      if (!*alive || closed_) return;
    }
    const bool delivered = !cells.empty();
    cells.clear();
    inbox_.swap(cells);  // keeps the capacity for the next read
    if (delivered && cb_.on_read_done) {
      cb_.on_read_done();
      if (!*alive || closed_) return;
    }
    if (!cell_error.empty()) fail(cell_error);
  }

  void arm_idle() {
    if (idle_armed_ || !idle_.get()) return;
    idle_armed_ = true;
    uv_idle_start(idle_.get(), [](uv_idle_t* h) {
      if (auto* self = static_cast<ChannelImpl*>(h->data)) self->on_idle();
    });
  }

  void on_idle() {
    idle_armed_ = false;
    uv_idle_stop(idle_.get());
    if (failure_) {
      // Reported from the loop, never from inside a call the owner made into this Channel.
      std::string reason = std::move(*failure_);
      failure_.reset();
      auto cb = std::move(cb_.on_closed);
      cb_ = {};
      if (cb) cb(reason);  // may destroy this
      return;
    }
    flush();
    check_drain();
  }

  void check_drain() {
    if (!drain_armed_ || closed_ || queued_bytes() > drain_low_water_) return;
    drain_armed_ = false;
    if (drain_cb_) drain_cb_();  // may destroy this
  }

  // Seals what is queued into records and writes them with one write.
  void flush() {
    if (closed_ || !conn_ || conn_->closed()) return;
    out_.clear();
    session_.take_output(out_);
    if (session_.established()) pending_cells_ = 0;
    if (out_.empty()) return;
    // A write error closes the connection and comes back through its close callback, which only
    // records the failure; nothing here runs after this object could be gone.
    conn_->write(ByteView(out_));
  }

  // Closes the link now and reports `reason` from the loop.
  void fail(std::string reason) {
    if (closed_) return;
    LOG_DEBUG("link " << (initiator_ ? "to " : "from ") << peer_ << " closed: " << reason);
    closed_ = true;
    timer_.stop();
    pending_cells_ = 0;
    if (conn_) conn_->close();
    failure_ = std::move(reason);
    arm_idle();
  }

  void shut_down() {
    if (closed_) {
      idle_.close();
      return;
    }
    closed_ = true;
    timer_.stop();
    idle_.close();
    if (conn_ && !conn_->closed()) {
      // The connection may outlive this object (see linger_close): nothing of ours stays in it.
      conn_->set_callbacks(nullptr, nullptr);
      conn_->on_drain(0, nullptr);
      if (session_.established()) {
        out_.clear();
        session_.take_output(out_);
        if (!out_.empty()) conn_->write(ByteView(out_));
      }
      linger_close(std::move(conn_));
    }
    conn_.reset();
    pending_cells_ = 0;
  }

  std::unique_ptr<uv::TcpConnection> conn_;
  crypto::LinkSession session_;
  bool initiator_;
  std::string peer_;
  Callbacks cb_;
  uv::Timer timer_;
  uv::Handle<uv_idle_t> idle_;
  bool idle_armed_ = false;
  bool established_ = false;
  bool closed_ = false;
  std::optional<std::string> failure_;
  std::size_t pending_cells_ = 0;
  std::function<void()> drain_cb_;
  std::size_t drain_low_water_ = 0;
  bool drain_armed_ = false;
  Bytes out_;
  std::vector<Cell> inbox_;
  std::shared_ptr<bool> alive_;
};

}  // namespace

std::unique_ptr<Channel> Channel::connect(uv_loop_t* loop, const HostPort& address,
                                          const crypto::Ed25519Public& expected_identity,
                                          const crypto::IdentityKey* own, Callbacks callbacks,
                                          ChannelOptions options) {
  auto session = crypto::LinkSession::initiator(expected_identity, own, crypto::system_rng());
  auto ch = std::make_unique<ChannelImpl>(loop, std::make_unique<uv::TcpConnection>(loop), std::move(session),
                                          true, address.to_string(), std::move(callbacks), options);
  ch->start_connect(address);
  return ch;
}

std::unique_ptr<Channel> Channel::accept(std::unique_ptr<uv::TcpConnection> conn, const crypto::IdentityKey& own,
                                         Callbacks callbacks, ChannelOptions options) {
  uv_loop_t* loop = conn->loop();
  std::string peer = conn->peer_address();
  auto session = crypto::LinkSession::responder(own, crypto::system_rng());
  auto ch = std::make_unique<ChannelImpl>(loop, std::move(conn), std::move(session), false, std::move(peer),
                                          std::move(callbacks), options);
  ch->start_accepted();
  return ch;
}

}  // namespace thor::link
