"""The Lua scripts redmodel runs on the server, one file each, loaded by ``_plan.script``."""
