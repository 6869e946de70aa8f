// crew: Node.js's concurrency model for C++20, on libuv. The umbrella header.
#pragma once

#include "crew/broadcast_channel.hpp"
#include "crew/buffer.hpp"
#include "crew/child_process.hpp"
#include "crew/error.hpp"
#include "crew/http.hpp"
#include "crew/ipc.hpp"
#include "crew/loop.hpp"
#include "crew/message.hpp"
#include "crew/message_port.hpp"
#include "crew/shared_buffer.hpp"
#include "crew/signal.hpp"
#include "crew/stream.hpp"
#include "crew/task.hpp"
#include "crew/timer.hpp"
#include "crew/work.hpp"
#include "crew/worker_threads.hpp"
