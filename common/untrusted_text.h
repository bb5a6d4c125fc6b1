// Text that came from a user (a lease's purpose, a start failure's detail, a
// lease id in a request) is a claim, not a string to print: it may carry
// newlines that forge log lines, escape sequences that drive an admin's
// terminal, or bytes that are not UTF-8. It is escaped at every edge where a
// person or a line-based tool reads it (logs, CLI tables); JSON output stays
// JSON through its own encoder.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace xpra_broker {

// Printable UTF-8 passes through unchanged; '\n', '\r', '\t' and '\\' become
// C escapes; every other control character (C0, DEL, C1) and every byte that
// is not part of valid UTF-8 becomes \xNN; Unicode format characters (Cf:
// bidi controls, zero-width ones, U+2028/9) become \uXXXX. At most `max_bytes` of the input
// are looked at; a longer input ends with "...".
std::string escape_untrusted(std::string_view text, std::size_t max_bytes = 256);

// Valid UTF-8 without control characters (C0, DEL, C1) or format
// characters (Cf, bidi controls, U+2028/9): what a field meant for people
// (a purpose) may hold.
bool is_printable_text(std::string_view text);

}  // namespace xpra_broker
