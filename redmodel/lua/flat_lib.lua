-- the leaf keys a flat object's manifest names (lines after the skeleton)
local function leaves(manifest, base)
  local out, first = {}, true
  for line in string.gmatch(manifest, '[^\n]+') do
    if first then first = false else out[#out + 1] = base .. line end
  end
  return out
end
