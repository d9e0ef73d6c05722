-- Argo CD health of a ShardRing, from the conditions the operator writes (docs/reference.md):
-- Stalled (only a person's change can fix it) is Degraded; Reconciling is Progressing; Ready is
-- Healthy; a suspended ring is Suspended; any other ring that is not Ready (an unreachable
-- source, a guard keeping the last ring) is Degraded until the world recovers.
-- Uses nothing but Lua's base library, so it runs with or without useOpenLibs.
local function verdict(status, message)
  return {status = status, message = message}
end
if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  return verdict("Progressing", "The ShardRing is being deleted")
end
if obj.status == nil or obj.status.conditions == nil then
  return verdict("Progressing", "Waiting for the shardring operator to report a status")
end
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
if generation ~= nil and obj.status.observedGeneration ~= nil and
    obj.status.observedGeneration < generation then
  return verdict("Progressing", "Waiting for the shardring operator to act on generation " .. generation)
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
  return verdict("Degraded", said(found.Stalled))
end
if found.Ready ~= nil and found.Ready.status == "False" and found.Ready.reason == "Suspended" then
  return verdict("Suspended", said(found.Ready))
end
if found.Reconciling ~= nil and found.Reconciling.status == "True" then
  return verdict("Progressing", said(found.Reconciling))
end
if found.Ready ~= nil and found.Ready.status == "True" then
  return verdict("Healthy", said(found.Ready))
end
if found.Ready ~= nil then
  return verdict("Degraded", said(found.Ready))
end
return verdict("Progressing", "Waiting for the shardring operator to report readiness")
