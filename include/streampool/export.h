#pragma once
// What libstreampool exports. The library is built with hidden visibility: only declarations
// between STREAMPOOL_API_BEGIN and STREAMPOOL_API_END - the namespaces of the public headers in
// include/streampool/ - are visible to programs that link it; everything under src/ stays
// inside the library (smaller symbol table, no interposition, internals free to change).

#if defined(__GNUC__) || defined(__clang__)
#define STREAMPOOL_API_BEGIN _Pragma("GCC visibility push(default)")
#define STREAMPOOL_API_END _Pragma("GCC visibility pop")
// One internal function made visible to streampool's own tests (never part of the API).
#define STREAMPOOL_TEST_HOOK __attribute__((visibility("default")))
#else
#define STREAMPOOL_API_BEGIN
#define STREAMPOOL_API_END
#define STREAMPOOL_TEST_HOOK
#endif
