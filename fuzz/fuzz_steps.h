// The request handler fuzzer's input language, read with FuzzedDataProvider
// (request_handler_fuzzer.cpp) and written by the corpus generator
// (make_corpus.cpp). Both sides live here so they cannot drift apart.
//
// FuzzedDataProvider takes integers from the end of the input and byte
// strings from its front; InputWriter keeps the two parts apart and joins
// them the same way.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace xpra_broker::fuzz {

inline constexpr std::size_t kCallerCount = 4;  // root, alice, bob, eve
inline constexpr std::size_t kSlotsPerCaller = 2;
inline constexpr std::uint32_t kRangeSizes[] = {3, 8, 64, 900};
inline constexpr std::uint16_t kMaxBody = 2048;  // above purpose's 128 and detail's 1 KiB limits

// RequestStep::patch bits.
inline constexpr std::uint8_t kPatchLeaseId = 1;   // lease_id := a lease the broker handed out
inline constexpr std::uint8_t kPatchToken = 2;     // reattach_token := that lease's token
inline constexpr std::uint8_t kPatchDisplay = 4;   // release by that lease's display
inline constexpr std::uint8_t kPatchOwnPid = 8;    // report_process pid := the fuzzer's (root's) pid
inline constexpr std::uint8_t kPatchLoginUid = 16; // open/close_login uid := a caller's uid

enum class StepKind : std::uint8_t { request, close, clock, reap, plant, repeat };
enum class PlantKind : std::uint8_t { lock_file, x11_file, x11_socket, lock_symlink };

struct RequestStep {
  std::size_t caller = 0;
  std::size_t slot = 0;
  std::uint8_t patch = 0;
  std::uint8_t lease_index = 0;  // 0: the most recent lease, 1: the one before, ...
  std::string body;              // a serialized Request (or anything)
};

struct PlantStep {
  std::uint8_t display_offset = 0;  // from the start of the range
  PlantKind kind = PlantKind::lock_file;
  std::size_t owner = 0;  // caller index
  std::string content;    // lock file text, or a symlink's target
};

struct Step {
  StepKind kind = StepKind::request;
  std::size_t caller = 0, slot = 0;  // close; slot is the step count for repeat
  std::uint32_t amount = 0;          // clock: ms; reap: unkillable; repeat: times
  bool flag = false;                 // reap: quick (nothing_to_reap for a lease without processes)
  RequestStep request;
  PlantStep plant;
};

struct Scenario {
  std::uint8_t range = 0;  // index into kRangeSizes
  bool lenient_guard = false;
};

// Selector values; request takes the most, being the most interesting.
inline constexpr std::uint8_t kSelectorMax = 9;
inline StepKind step_kind_of(std::uint8_t selector) {
  switch (selector) {
    case 5: return StepKind::close;
    case 6: return StepKind::clock;
    case 7: return StepKind::reap;
    case 8: return StepKind::plant;
    case 9: return StepKind::repeat;
    default: return StepKind::request;
  }
}

inline Scenario read_scenario(FuzzedDataProvider& in) {
  Scenario s;
  s.range = in.ConsumeIntegralInRange<std::uint8_t>(0, 3);
  s.lenient_guard = in.ConsumeBool();
  return s;
}

inline Step read_step(FuzzedDataProvider& in) {
  Step s;
  s.kind = step_kind_of(in.ConsumeIntegralInRange<std::uint8_t>(0, kSelectorMax));
  switch (s.kind) {
    case StepKind::request: {
      auto& r = s.request;
      r.caller = in.ConsumeIntegralInRange<std::uint8_t>(0, kCallerCount - 1);
      r.slot = in.ConsumeIntegralInRange<std::uint8_t>(0, kSlotsPerCaller - 1);
      r.patch = in.ConsumeIntegral<std::uint8_t>();
      r.lease_index = in.ConsumeIntegral<std::uint8_t>();
      r.body = in.ConsumeBytesAsString(in.ConsumeIntegralInRange<std::uint16_t>(0, kMaxBody));
      break;
    }
    case StepKind::close:
      s.caller = in.ConsumeIntegralInRange<std::uint8_t>(0, kCallerCount - 1);
      s.slot = in.ConsumeIntegralInRange<std::uint8_t>(0, kSlotsPerCaller - 1);
      break;
    case StepKind::clock: s.amount = std::uint32_t{in.ConsumeIntegral<std::uint16_t>()} * 16; break;
    case StepKind::reap:
      s.flag = in.ConsumeBool();
      s.amount = in.ConsumeBool();
      break;
    case StepKind::plant: {
      auto& p = s.plant;
      p.display_offset = in.ConsumeIntegralInRange<std::uint8_t>(0, 15);
      p.kind = static_cast<PlantKind>(in.ConsumeIntegralInRange<std::uint8_t>(0, 3));
      p.owner = in.ConsumeIntegralInRange<std::uint8_t>(0, kCallerCount - 1);
      p.content = in.ConsumeBytesAsString(in.ConsumeIntegralInRange<std::uint8_t>(0, 64));
      break;
    }
    case StepKind::repeat:
      s.slot = in.ConsumeIntegralInRange<std::uint8_t>(1, 4);
      s.amount = in.ConsumeIntegralInRange<std::uint16_t>(1, 1000);
      break;
  }
  return s;
}

// Writes inputs that read_scenario/read_step read back as written. Values
// must already lie in the ranges read_step uses.
class InputWriter {
 public:
  void scenario(const Scenario& s) {
    integer(s.range, 3);
    integer(s.lenient_guard ? 1 : 0, 255);
  }
  void request(std::size_t caller, std::size_t slot, const std::string& body, std::uint8_t patch = 0,
               std::uint8_t lease_index = 0) {
    integer(0, kSelectorMax);
    integer(caller, kCallerCount - 1);
    integer(slot, kSlotsPerCaller - 1);
    integer(patch, 255);
    integer(lease_index, 255);
    integer(std::min<std::size_t>(body.size(), kMaxBody), kMaxBody);
    front_ += body.substr(0, kMaxBody);
  }
  void close(std::size_t caller, std::size_t slot) {
    integer(5, kSelectorMax);
    integer(caller, kCallerCount - 1);
    integer(slot, kSlotsPerCaller - 1);
  }
  void clock(std::uint32_t ms) {
    integer(6, kSelectorMax);
    integer(std::min<std::uint32_t>(ms / 16, 65535), 65535);
  }
  void reap(bool quick, bool unkillable) {
    integer(7, kSelectorMax);
    integer(quick ? 1 : 0, 255);
    integer(unkillable ? 1 : 0, 255);
  }
  void plant(std::uint8_t display_offset, PlantKind kind, std::size_t owner, const std::string& content) {
    integer(8, kSelectorMax);
    integer(display_offset, 15);
    integer(static_cast<std::uint8_t>(kind), 3);
    integer(owner, kCallerCount - 1);
    integer(std::min<std::size_t>(content.size(), 64), 64);
    front_ += content.substr(0, 64);
  }
  void repeat(std::size_t steps, std::uint16_t times) {
    integer(9, kSelectorMax);
    integer(steps - 1, 3);
    integer(times - 1, 999);
  }
  std::string bytes() const { return front_ + std::string(back_.rbegin(), back_.rend()); }

 private:
  // ConsumeIntegralInRange reads one byte per 8 bits of (max - min), the most
  // significant first, from the end of the input.
  void integer(std::uint64_t value_from_min, std::uint64_t range) {
    int bytes = 0;
    for (std::uint64_t r = range; r > 0 && bytes < 8; r >>= 8) ++bytes;
    for (int i = bytes - 1; i >= 0; --i) back_.push_back(static_cast<char>((value_from_min >> (8 * i)) & 0xff));
  }
  std::string front_;
  std::vector<char> back_;
};

}  // namespace xpra_broker::fuzz
