// The generated protocol types, under the project's namespace.
#pragma once

#include "xpra_broker.pb.h"

namespace xpra_broker {
namespace v1 = ::xpra::broker::v1;
}
