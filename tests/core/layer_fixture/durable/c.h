// Fixture: a durable header (allowed rooms only).
#pragma once
#include "core/a.h"
