-- Argo CD health of a ShardRing, from the conditions the operator writes (docs/reference.md):
-- Stalled (only a person's change can fix it) is Degraded; Reconciling is Progressing; Ready is
-- Healthy; a suspended ring is Suspended; any other ring that is not Ready (an unreachable
-- source, a guard keeping the last ring) is Degraded until the world recovers.
-- Uses nothing but Lua's base library, so it runs with or without useOpenLibs.
local hs = {}
if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "The ShardRing is being deleted"
  return hs
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the shardring operator to report a status"
  return hs
end
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and obj.status.observedGeneration ~= nil and
    obj.status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the shardring operator to act on generation " .. generation
  return hs
end
local found = {}
for _, condition in ipairs(obj.status.conditions) do
  found[condition.type] = condition
end
local function said(condition)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.reason .. ": " .. condition.message
  end
  return condition.reason
end
if found.Stalled ~= nil and found.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = said(found.Stalled)
  return hs
end
if found.Ready ~= nil and found.Ready.status == "False" and found.Ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = said(found.Ready)
  return hs
end
if found.Reconciling ~= nil and found.Reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = said(found.Reconciling)
  return hs
end
if found.Ready ~= nil and found.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = said(found.Ready)
  return hs
end
if found.Ready ~= nil then
  hs.status = "Degraded"
  hs.message = said(found.Ready)
  return hs
end
hs.status = "Progressing"
hs.message = "Waiting for the shardring operator to report readiness"
return hs
