// Compatibility include for C++ code written before the runtime layer existed
// (scripts/sanitize_harness.cpp, scripts/tsan_harness.cpp): the engine, the thread pool and the
// backend factory live in csrc/runtime/ now. New code includes "../runtime/engine.hpp". Nothing in
// csrc/ includes this file (tests/test_layering.py allows it as the one exception to the layering).
#pragma once
#include "../runtime/engine.hpp"
