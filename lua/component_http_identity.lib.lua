-- The bot as contacts and clients see it, when the webhook does not answer for it: its presence
-- (always online, accepting every subscription), its disco#info identity (XEP-0030) and its
-- vCard with the avatar (XEP-0054, XEP-0153). Started by the module after the client, with the
-- kinds the client POSTs: what is POSTed is the webhook's to answer.

local st = require "util.stanza";
local jid_split = require "util.jid".split;

-- Always online, accepting every subscription: the native side decides what each presence is
-- answered with, and keeps who was told the bot is online (handed over on reload, to tell them
-- again at once when the avatar changed); this sends it. `photo`: what the bot's presence says
-- of its avatar (XEP-0153), its hash, "" for none (so clients do not ask), or false for nothing
-- (when the webhook answers vCard queries).
local function answer_presence(shim, native, photo)
	local presence = native.presence(photo, st.stanza_mt);
	shim.registries.on_save(function (saved)
		saved.component_http_presence = presence;
	end);
	shim.registries.on_restore(function (saved)
		local old = saved.component_http_presence;
		if type(old) ~= "userdata" then
			return;
		end
		local resend, told = presence:adopt(old);
		if resend then
			for _, stanza in ipairs(resend) do
				module:send(stanza);
			end
			module:log("info", "The avatar changed: sent the bot's presence with its new hash to %d contacts", told);
		end
	end);

	local function handle_presence(event)
		local attr = event.stanza.attr;
		for _, stanza in ipairs(presence:answer(attr.to, attr.from, attr.type)) do
			module:send(stanza);
		end
		return true;
	end
	for _, target in ipairs({ "host", "bare", "full" }) do
		module:hook("presence/"..target, handle_presence, 10);
	end
end

-- disco#info (XEP-0030) to the component or a JID on it: the bot's identity, named by the name
-- option or else the JID asked, and the features the module implements; and the bot's vCard
-- (XEP-0054): its name, and its avatar when one is set, the same for every JID on the component
-- (they are all the bot). A query about a node is not answered here.
local function answer_queries(identity, avatar)
	-- The name the bot goes by at the JID `to`.
	local function bot_name(to)
		local node, host = jid_split(to);
		return identity.name or node or host;
	end
	local function disco_info(event)
		local stanza = event.stanza;
		if stanza.tags[1].attr.node then
			return;
		end
		local reply = st.reply(stanza):query("http://jabber.org/protocol/disco#info")
			:tag("identity", { category = "client", type = "bot", name = bot_name(stanza.attr.to) }):up()
			:tag("feature", { var = "http://jabber.org/protocol/disco#info" }):up()
			:tag("feature", { var = "urn:xmpp:receipts" }):up()
			:tag("feature", { var = "vcard-temp" }):up();
		if identity.chat_states then
			reply:tag("feature", { var = "http://jabber.org/protocol/chatstates" }):up();
		end
		module:send(reply);
		return true;
	end
	module:hook("iq-get/host/http://jabber.org/protocol/disco#info:query", disco_info);
	module:hook("iq-get/bare/http://jabber.org/protocol/disco#info:query", disco_info);

	local function vcard(event)
		local stanza = event.stanza;
		local reply = st.reply(stanza):tag("vCard", { xmlns = "vcard-temp" })
			:text_tag("FN", bot_name(stanza.attr.to));
		if avatar then
			reply:tag("PHOTO"):text_tag("TYPE", avatar.type):text_tag("BINVAL", avatar.base64):up();
		end
		module:send(reply);
		return true;
	end
	module:hook("iq-get/host/vcard-temp:vCard", vcard);
	module:hook("iq-get/bare/vcard-temp:vCard", vcard);
end

-- Answers for the bot what the client does not POST (`forwarded`, the set of kinds it does).
local function start(shim, native, profile, client, forwarded, avatar)
	-- Whether the module answers vCard queries: it does unless iqs are POSTed.
	local serves_vcard = not forwarded.iq;
	if serves_vcard then
		answer_queries(client:identity(), avatar);
	elseif avatar then
		module:log("warn", "The avatar is not served: iq stanzas are POSTed to the webhook, which answers vCard "
			.."queries itself (leave \"iq\" out of %s for the module to serve it)", profile.stanzas_option);
	end
	if profile.answer_presence and not forwarded.presence then
		answer_presence(shim, native, serves_vcard and (avatar and avatar.sha1 or ""));
	end
end

return {
	start = start;
};
