#pragma once
// Everything public in one include.

#include "streampool/device.h"
#include "streampool/error.h"
#include "streampool/event.h"
#include "streampool/settings.h"
#include "streampool/stream.h"
#include "streampool/stream_guard.h"
#include "streampool/stream_pool.h"
#include "streampool/version.h"
#include "streampool/allocator.h"
#include "streampool/dtype.h"
#include "streampool/safetensors.h"
#include "streampool/tensor.h"
