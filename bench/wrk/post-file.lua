-- POSTs one file as every request's body, then reports as figures.lua does.
--   wrk -s post-file.lua URL -- FILE [CONTENT_TYPE]
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "figures.lua")

init = function(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.body = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[2] or "application/octet-stream"
end
