// Fixture for core.LayerRules.ACoreIncludingHostAndAFlatIncludeAreReported: a core header
// reaching into host.
#pragma once
#include "host/b.h"
