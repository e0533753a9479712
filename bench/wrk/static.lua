-- One fixed request (the URL given to wrk): floor and list_hot. No request()
-- function, so wrk sends its prepared request with no Lua per request.
local c = dofile(os.getenv("BENCH_LUA") .. "/common.lua")
done = c.done
