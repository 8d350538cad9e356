-- the leaf keys a flat object's manifest names (lines after the skeleton)
local function leaves(manifest, base)
  local out, first = {}, true
  for line in string.gmatch(manifest, '[^\n]+') do
    if first then first = false else out[#out + 1] = base .. line end
  end
  return out
end
-- Every key a script touches is in KEYS: nil when each of `keys` is declared, else the
-- reply {'KEYS', missing...} to give instead of touching anything (the client sends the
-- call again with them; redmodel/_flat.py)
local function undeclared(keys)
  local declared = {}
  for _, k in ipairs(KEYS) do declared[k] = true end
  local out = {'KEYS'}
  for _, k in ipairs(keys) do
    if not declared[k] then out[#out + 1] = k end
  end
  if #out > 1 then return out end
  return nil
end
