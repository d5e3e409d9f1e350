// Cells and control cell bodies. The layouts are in cell.hpp and docs/protocol.md.
//
// Every body has exactly one encoding: the bytes after it are zero and a receiver refuses anything
// else, so a cell that decodes re-encodes to the same bytes (the fuzz targets check this) and no
// field leaves room for data nobody reads. Reasons are the one exception: an unknown DESTROY reason
// reads as `none`, because refusing a DESTROY would leave a circuit half open.
#include "common/cell/cell.hpp"

#include <cassert>
#include <cstdio>

namespace thor {

namespace {

constexpr std::size_t kCreateMaxHandshake = kCellPayloadSize - 4;   // 505
constexpr std::size_t kCreatedMaxHandshake = kCellPayloadSize - 2;  // 507

bool known_command(std::uint8_t c) { return c <= static_cast<std::uint8_t>(CellCommand::destroy); }

std::string hex16(std::uint16_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", v);
  return buf;
}

std::string hex32(std::uint32_t v) {
  char buf[12];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// The rest of a payload after its body must be zero.
Status check_zero_padding(Reader& r, const char* what) {
  std::size_t offset = r.consumed();
  std::uint8_t b = 0;
  while (r.u8(b)) {
    if (b != 0)
      return Error{std::string(what) + ": byte " + std::to_string(b) + " at payload offset " +
                   std::to_string(offset) + " after the body (padding must be zero)"};
    ++offset;
  }
  return {};
}

}  // namespace

const char* to_string(CellCommand c) {
  switch (c) {
    case CellCommand::padding: return "PADDING";
    case CellCommand::create: return "CREATE";
    case CellCommand::created: return "CREATED";
    case CellCommand::relay: return "RELAY";
    case CellCommand::destroy: return "DESTROY";
  }
  return "unknown";
}

const char* to_string(DestroyReason r) {
  switch (r) {
    case DestroyReason::none: return "none";
    case DestroyReason::protocol: return "protocol";
    case DestroyReason::internal: return "internal";
    case DestroyReason::requested: return "requested";
    case DestroyReason::hibernating: return "hibernating";
    case DestroyReason::resource_limit: return "resource_limit";
    case DestroyReason::connect_failed: return "connect_failed";
    case DestroyReason::or_identity: return "or_identity";
    case DestroyReason::channel_closed: return "channel_closed";
    case DestroyReason::finished: return "finished";
    case DestroyReason::timeout: return "timeout";
    case DestroyReason::destroyed: return "destroyed";
    case DestroyReason::no_such_service: return "no_such_service";
  }
  return "unknown";
}

void encode_cell(const Cell& cell, MutableByteView out) {
  assert(out.size() == kCellSize);
  SpanWriter w(out);
  w.u32(cell.circ_id).u8(static_cast<std::uint8_t>(cell.command)).bytes(ByteView(cell.payload));
  assert(w.ok() && w.written() == kCellSize);
}

CellBytes encode_cell(const Cell& cell) {
  CellBytes out{};
  encode_cell(cell, MutableByteView(out));
  return out;
}

Status decode_cell_into(ByteView data, Cell& cell) {
  assert(data.size() >= kCellSize);
  Reader r(data);
  std::uint8_t command = 0;
  bool read = r.u32(cell.circ_id) && r.u8(command) && r.array(cell.payload);
  assert(read);
  (void)read;
  if (!known_command(command))
    return Error{"cell: command " + std::to_string(command) + " unknown (on circuit " + hex32(cell.circ_id) + ")"};
  cell.command = static_cast<CellCommand>(command);
  // Circuit id 0 names no circuit (Tor reserves it the same way); only padding may use it.
  if (cell.circ_id == 0 && cell.command != CellCommand::padding)
    return Error{std::string("cell: ") + to_string(cell.command) + " on circuit id 0 (reserved for padding)"};
  return {};
}

Decoded<Cell> decode_cell(ByteView data) {
  if (data.size() < kCellSize) return Decoded<Cell>::incomplete();
  Cell cell;
  if (Status st = decode_cell_into(data, cell); !st) return Decoded<Cell>::invalid(st.error());
  return Decoded<Cell>::ok(std::move(cell), kCellSize);
}

Cell make_create_cell(CircId id, const CreateBody& body) {
  assert(body.handshake.size() <= kCreateMaxHandshake);
  Cell cell{id, CellCommand::create, {}};
  SpanWriter w{MutableByteView(cell.payload)};
  w.u16(body.handshake_type).u16(static_cast<std::uint16_t>(body.handshake.size())).bytes(ByteView(body.handshake));
  assert(w.ok());
  return cell;
}

Cell make_created_cell(CircId id, const CreatedBody& body) {
  assert(body.handshake.size() <= kCreatedMaxHandshake);
  Cell cell{id, CellCommand::created, {}};
  SpanWriter w{MutableByteView(cell.payload)};
  w.u16(static_cast<std::uint16_t>(body.handshake.size())).bytes(ByteView(body.handshake));
  assert(w.ok());
  return cell;
}

Cell make_destroy_cell(CircId id, DestroyReason reason) {
  Cell cell{id, CellCommand::destroy, {}};
  cell.payload[0] = static_cast<std::uint8_t>(reason);
  return cell;
}

Result<CreateBody> parse_create(const CellPayload& payload) {
  Reader r{ByteView(payload)};
  CreateBody body;
  std::uint16_t hlen = 0;
  ByteView hdata;
  bool read = r.u16(body.handshake_type) && r.u16(hlen);
  assert(read);  // a payload always holds 509 bytes
  (void)read;
  if (body.handshake_type != kHandshakeNtorV1)
    return Error{"CREATE: handshake type " + hex16(body.handshake_type) + " unknown (expected " +
                 hex16(kHandshakeNtorV1) + ", thor-ntor-v1)"};
  if (hlen > kCreateMaxHandshake)
    return Error{"CREATE: handshake length " + std::to_string(hlen) + " exceeds " +
                 std::to_string(kCreateMaxHandshake)};
  read = r.take(hlen, hdata);
  assert(read);
  body.handshake.assign(hdata.begin(), hdata.end());
  if (auto s = check_zero_padding(r, "CREATE"); !s) return Error{s.error()};
  return body;
}

Result<CreatedBody> parse_created(const CellPayload& payload) {
  Reader r{ByteView(payload)};
  CreatedBody body;
  std::uint16_t hlen = 0;
  ByteView hdata;
  bool read = r.u16(hlen);
  assert(read);
  (void)read;
  if (hlen > kCreatedMaxHandshake)
    return Error{"CREATED: handshake length " + std::to_string(hlen) + " exceeds " +
                 std::to_string(kCreatedMaxHandshake)};
  read = r.take(hlen, hdata);
  assert(read);
  body.handshake.assign(hdata.begin(), hdata.end());
  if (auto s = check_zero_padding(r, "CREATED"); !s) return Error{s.error()};
  return body;
}

Result<DestroyBody> parse_destroy(const CellPayload& payload) {
  Reader r{ByteView(payload)};
  std::uint8_t reason = 0;
  bool read = r.u8(reason);
  assert(read);
  (void)read;
  if (auto s = check_zero_padding(r, "DESTROY"); !s) return Error{s.error()};
  DestroyBody body;
  // The circuit closes whatever the reason says; a reason from a newer peer must not keep it open.
  if (reason <= static_cast<std::uint8_t>(DestroyReason::no_such_service))
    body.reason = static_cast<DestroyReason>(reason);
  return body;
}

}  // namespace thor
