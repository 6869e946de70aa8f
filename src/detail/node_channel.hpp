// The IPC channel a parent hands over in NODE_CHANNEL_FD.
#pragma once

namespace crew::detail {

/// The fd from NODE_CHANNEL_FD, or -1. The first call removes NODE_CHANNEL_FD and
/// NODE_CHANNEL_SERIALIZATION_MODE from the environment, as Node does; later
/// calls return the same answer.
int channel_fd_from_environment();

}  // namespace crew::detail
