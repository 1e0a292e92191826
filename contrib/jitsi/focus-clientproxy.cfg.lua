-- clientproxy serves Jitsi Meet's focus address, focus.<domain>, as an
-- external component (XEP-0114), in place of Prosody's mod_client_proxy.
-- See docs/jitsi.md.
--
-- Debian (jitsi-meet-prosody): copy to /etc/prosody/conf.d/ and set the
-- domain below; the secret file is /etc/clientproxy/focus.secret (mode
-- 0640, group prosody, so that Prosody can read it too). Nothing else of
-- Prosody's configuration is edited: jitsi-meet-prosody's own file keeps its
-- `Component "focus.<domain>" "client_proxy"`, and its maintainer script,
-- which puts that line back on every configure or upgrade, finds nothing
-- to undo. docker-jitsi-meet: mounted into /config/conf.d/ by
-- docker/docker-compose.clientproxy.yml; the domain, the secret's file and
-- the interface come from the container's environment.

-- Lua's own functions (io, require, prosody): Prosody 0.12 lets a
-- configuration file reach them directly; a newer Prosody may offer them under
-- the name Lua only (not tried). Without either, Prosody refuses to start,
-- naming this file.
local G = Lua or _G

local domain = ENV_XMPP_DOMAIN or "meet.example.org"
local secretFile = ENV_CLIENTPROXY_SECRET_FILE or "/etc/clientproxy/focus.secret"
local focus = "focus." .. domain

-- The component port clientproxy connects to: loopback on one host; every
-- interface of the container on docker-jitsi-meet's network (whose own
-- configuration opens no component port).
component_ports = { 5347 }
component_interfaces = { ENV_CLIENTPROXY_INTERFACE or "127.0.0.1" }

local function readSecret(path)
    local file, err = G.io.open(path)
    if not file then
        error("focus-clientproxy.cfg.lua: cannot read the component secret: " .. tostring(err), 0)
    end
    local secret = file:read("*l")
    file:close()
    return secret
end

Component (focus)
    component_secret = readSecret(secretFile)

-- jitsi-meet-prosody's file declares the same address with
-- mod_client_proxy. Prosody reads conf.d/*.cfg.lua in the order the
-- directory lists them (not sorted), and the declaration read last would
-- win; so, once the whole configuration is read and before any host
-- starts, this declaration is made the one in force, whichever file came
-- last. (prosodyctl reads the configuration too: nothing to do there.)
local prosody = G.prosody
if prosody and prosody.process_type == "prosody" and prosody.events then
    prosody.events.add_handler("server-starting", function ()
        G.require("core.configmanager").set(focus, "component_module", "component")
    end, 1000)
end
