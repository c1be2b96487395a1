-- wrk script: posts the signed bodies that `botload bodies` wrote, each once per round.
--
--   target/release/botload bodies --secret "$LINE_CHANNEL_SECRET" --out /tmp/bodies.txt
--   BODIES=/tmp/bodies.txt wrk -t1 -c64 -d15s -s bench/wrk/webhook.lua http://127.0.0.1:8080
--
-- One wrk thread (-t1) sends every body once before any repeats; with more threads each reads
-- the whole file and their rounds overlap, so the bot drops some events as duplicates.
-- WEBHOOK_PATH and SIGNATURE_HEADER: /line/webhook and x-line-signature by default; for Messenger set
-- WEBHOOK_PATH=/messenger/webhook SIGNATURE_HEADER=x-hub-signature-256.
local path = os.getenv("WEBHOOK_PATH") or "/line/webhook"
local header = os.getenv("SIGNATURE_HEADER") or "x-line-signature"
local bodies, signatures = {}, {}
local next_body = 0

function init(args)
  local file = os.getenv("BODIES") or "/tmp/bodies.txt"
  for line in io.lines(file) do
    local tab = line:find("\t", 1, true)
    signatures[#signatures + 1] = line:sub(1, tab - 1)
    bodies[#bodies + 1] = line:sub(tab + 1)
  end
  if #bodies == 0 then
    error("no bodies in " .. file)
  end
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    [header] = signatures[next_body],
  }, bodies[next_body])
end
