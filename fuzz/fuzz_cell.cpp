// Cells and control cell bodies. Decodes the input as a cell (and, zero-extended, as a control
// payload of every kind), re-encodes whatever decodes, and aborts when the round trip changes it.
// The encodings are canonical, so re-encoding reproduces the input bytes exactly; the one exception
// is a DESTROY reason the parser does not know, which reads as `none`.
//
// Random bytes rarely make a valid cell, so the input is also read as edits to valid cells
// (a template chosen by the first byte, then xor-or-truncate edits): most of those decode, or fail
// one check deep inside, which is where the bugs would be.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/cell/cell.hpp"

#include "fuzz/fuzz_support.hpp"

using namespace thor;
using thor::fuzz::require;

namespace {

void control_bodies(const Cell& cell) {
  const CellPayload& p = cell.payload;
  if (auto c = parse_create(p); c.ok()) {
    Cell again = make_create_cell(cell.circ_id, *c);
    require(again.payload == p, "CREATE re-encodes to other bytes");
    auto c2 = parse_create(again.payload);
    require(c2.ok() && *c2 == *c, "CREATE re-decodes differently");
  } else {
    require(!c.error().empty(), "CREATE error without a message");
  }
  if (auto c = parse_created(p); c.ok()) {
    Cell again = make_created_cell(cell.circ_id, *c);
    require(again.payload == p, "CREATED re-encodes to other bytes");
  } else {
    require(!c.error().empty(), "CREATED error without a message");
  }
  if (auto d = parse_destroy(p); d.ok()) {
    Cell again = make_destroy_cell(cell.circ_id, d->reason);
    if (p[0] <= static_cast<std::uint8_t>(DestroyReason::no_such_service))
      require(again.payload == p, "DESTROY re-encodes to other bytes");
    auto d2 = parse_destroy(again.payload);
    require(d2.ok() && *d2 == *d, "DESTROY re-decodes differently");
  } else {
    require(!d.error().empty(), "DESTROY error without a message");
  }
}

void check(ByteView in) {
  auto d = decode_cell(in);
  if (in.size() < kCellSize) require(d.is_incomplete(), "a short buffer is not incomplete");
  if (d.is_ok()) {
    require(d.consumed == kCellSize, "consumed is not one cell");
    CellBytes again = encode_cell(*d.value);
    require(std::equal(again.begin(), again.end(), in.begin()), "cell re-encodes to other bytes");
    control_bodies(*d.value);
  } else if (d.is_invalid()) {
    require(!d.error.empty(), "invalid cell without a message");
  }

  // Short inputs are mostly zero once they fill a payload, which is what real bodies look like.
  Cell cell;
  cell.circ_id = 1;
  std::copy(in.begin(), in.begin() + static_cast<long>(std::min(in.size(), kCellPayloadSize)), cell.payload.begin());
  control_bodies(cell);
}

std::vector<Bytes> templates() {
  CreateBody create;
  create.handshake = Bytes(96, 0x41);
  CreatedBody created;
  created.handshake = Bytes(64, 0x42);
  Cell relay{0x80000003, CellCommand::relay, {}};
  relay.payload.fill(0x99);
  std::vector<Cell> cells = {make_create_cell(0x80000001, create), make_created_cell(0x80000001, created),
                             make_destroy_cell(7, DestroyReason::finished), relay, Cell{}};
  std::vector<Bytes> out;
  for (const auto& c : cells) {
    CellBytes b = encode_cell(c);
    out.emplace_back(b.begin(), b.end());
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::set_input("fuzz_cell", ByteView(data, size));
  check(ByteView(data, size));

  if (size < 1) return 0;
  static const std::vector<Bytes> kTemplates = templates();
  Bytes t = kTemplates[data[0] % kTemplates.size()];
  // Up to three edits of 3 bytes: position u16, value; value 0 truncates there, anything else is
  // xored in. More edits would leave little of the template.
  for (std::size_t i = 1; i + 3 <= size && i < 10 && !t.empty(); i += 3) {
    std::size_t pos = static_cast<std::size_t>((data[i] << 8) | data[i + 1]) % t.size();
    if (data[i + 2] == 0) t.resize(pos);
    else t[pos] ^= data[i + 2];
  }
  check(ByteView(t));
  return 0;
}
