#include "crew/work.hpp"

namespace crew {
namespace detail {

void submit(loop& l, std::shared_ptr<work_state> job) {
  work_state* raw = job.get();
  raw->owner = &l;
  raw->request.data = raw;
  raw->self = std::move(job);
  uv_queue_work(
      l.native(), &raw->request,
      [](uv_work_t* request) { static_cast<work_state*>(request->data)->execute(); },
      [](uv_work_t* request, int status) {
        auto* state = static_cast<work_state*>(request->data);
        std::shared_ptr<work_state> keep = std::move(state->self);
        auto finish = [&] { state->complete(uv_error(status)); };
        state->owner->invoke(finish);
      });  // cannot fail: both callbacks are given
}

}  // namespace detail

std::error_code work::cancel() noexcept {
  if (!job_) return uv_error(UV_EINVAL);
  if (!job_->self || job_->cancelled) return uv_error(UV_EBUSY);  // done, or cancelled before
  int rc = uv_cancel(reinterpret_cast<uv_req_t*>(&job_->request));
  job_->cancelled = rc == 0;
  return uv_error(rc);
}

}  // namespace crew
