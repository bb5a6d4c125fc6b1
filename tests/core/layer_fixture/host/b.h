// Fixture: a host header including a room header without its room.
#pragma once
#include "c.h"
