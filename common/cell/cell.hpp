// Cells: the fixed-size unit every link carries (514 bytes, as in Tor), so sizes leak nothing.
//
//   circ_id u32 | command u8 | payload[509]
//
// Control cells (CREATE, CREATED, DESTROY) are read by the relay at the end of the link; RELAY
// cells carry an onion-encrypted payload whose relay header only the recognizing hop can read.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/bytes.hpp"
#include "common/result.hpp"

namespace thor {

constexpr std::size_t kCellSize = 514;
constexpr std::size_t kCellPayloadSize = 509;
constexpr std::uint32_t kCircIdInitiatorBit = 0x80000000u;  // set by the side that opened the link

using CircId = std::uint32_t;
using CellBytes = std::array<std::uint8_t, kCellSize>;
using CellPayload = std::array<std::uint8_t, kCellPayloadSize>;

enum class CellCommand : std::uint8_t {
  padding = 0,
  create = 1,
  created = 2,
  relay = 3,
  destroy = 4,
};
const char* to_string(CellCommand c);

// Tor's DESTROY / TRUNCATED reasons (tor-spec 5.4).
enum class DestroyReason : std::uint8_t {
  none = 0,
  protocol = 1,       // a malformed cell, or a relay cell that failed its integrity check
  internal = 2,
  requested = 3,      // the client tore the circuit down
  hibernating = 4,
  resource_limit = 5, // a limit was hit (circuits per link, queued bytes, ...)
  connect_failed = 6, // could not reach the next relay
  or_identity = 7,    // the next relay is not who EXTEND or CREATE named
  channel_closed = 8, // a link this circuit used closed
  finished = 9,
  timeout = 10,
  destroyed = 11,
  no_such_service = 12,
};
const char* to_string(DestroyReason r);

struct Cell {
  CircId circ_id = 0;
  CellCommand command = CellCommand::padding;
  CellPayload payload{};
  bool operator==(const Cell&) const = default;
};

// Always exactly kCellSize bytes.
void encode_cell(const Cell& cell, MutableByteView out);
CellBytes encode_cell(const Cell& cell);
// Needs kCellSize bytes (else incomplete, never invalid); invalid for an unknown command, and for
// any command but padding on circuit id 0 (which names no circuit).
Decoded<Cell> decode_cell(ByteView data);
// The same checks, decoding straight into `out` (the link's receive path: no temporary Cell).
// data must hold kCellSize bytes; on an error `out` holds garbage.
Status decode_cell_into(ByteView data, Cell& out);

// ---- control cell bodies -------------------------------------------------------------------

constexpr std::uint16_t kHandshakeNtorV1 = 0x0002;  // thor-ntor-v1, see crypto/ntor.hpp

struct CreateBody {
  std::uint16_t handshake_type = kHandshakeNtorV1;
  Bytes handshake;  // client's onion-skin, at most kCellPayloadSize - 4 bytes
  bool operator==(const CreateBody&) const = default;
};
struct CreatedBody {
  Bytes handshake;  // relay's reply, at most kCellPayloadSize - 2 bytes
  bool operator==(const CreatedBody&) const = default;
};
struct DestroyBody {
  DestroyReason reason = DestroyReason::none;
  bool operator==(const DestroyBody&) const = default;
};

Cell make_create_cell(CircId id, const CreateBody& body);
Cell make_created_cell(CircId id, const CreatedBody& body);
Cell make_destroy_cell(CircId id, DestroyReason reason);

// Parse the payload of a cell whose command is already known. Payloads are whole, so these return
// a value or invalid with a reason ("CREATE: handshake length 600 exceeds 505"). Encodings are
// canonical: an unknown handshake type and non-zero bytes after the body are refused. An unknown
// DESTROY reason reads as `none` (the circuit closes whatever the reason says).
Result<CreateBody> parse_create(const CellPayload& payload);
Result<CreatedBody> parse_created(const CellPayload& payload);
Result<DestroyBody> parse_destroy(const CellPayload& payload);

}  // namespace thor
