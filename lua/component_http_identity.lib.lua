-- The bot as contacts and clients see it, when the webhook does not answer for it: its presence
-- (always online, accepting every subscription), its disco#info identity (XEP-0030) and its
-- vCard with the avatar (XEP-0054, XEP-0153). Started by the module after the client, with the
-- kinds the client POSTs: what is POSTed is the webhook's to answer.

local st = require "util.stanza";
local jid_bare = require "util.jid".bare;
local jid_split = require "util.jid".split;

-- The bot's available presence. While the module answers vCards, it says whether the bot has
-- an avatar (XEP-0153): the avatar's hash, or an empty <photo/> for none, so clients do not
-- ask; when the webhook answers them instead, it says nothing of one.
local function online_presence(photo, from, to)
	local presence = st.presence({ from = from, to = to });
	if photo then
		presence:tag("x", { xmlns = "vcard-temp:x:update" }):text_tag("photo", photo ~= "" and photo or nil):up();
	end
	return presence;
end

-- Always online, accepting every subscription. `photo`: what the presence says of the avatar,
-- its hash, "" for none, false for nothing.
local function answer_presence(shim, photo)
	-- Who has been sent the bot's available presence, by bot JID: told at once when a reload
	-- changes the avatar (XEP-0153 asks for a new presence then) rather than at their next login.
	-- Bounded: past the limit, a contact learns of a change at its next login, as it would anyway.
	local announced, announced_count, max_announced = {}, 0, 10000;
	local function note_announced(online, contact, sent)
		local contacts = announced[online];
		if sent and not (contacts and contacts[contact]) and announced_count < max_announced then
			contacts = contacts or {};
			announced[online], contacts[contact], announced_count = contacts, true, announced_count + 1;
		elseif not sent and contacts and contacts[contact] then
			contacts[contact], announced_count = nil, announced_count - 1;
		end
	end

	-- On reload: takes over who was told, and tells them again if the avatar changed.
	shim.registries.on_restore(function (saved)
		local old = saved.component_http_presence;
		if not old then
			return;
		end
		announced, announced_count = old.announced, old.count;
		if old.photo == photo or not photo then
			return;
		end
		for online, contacts in pairs(announced) do
			for contact in pairs(contacts) do
				module:send(online_presence(photo, online, contact));
			end
		end
		module:log("info", "The avatar changed: sent the bot's presence with its new hash to %d contacts", announced_count);
	end);
	shim.registries.on_save(function (saved)
		saved.component_http_presence = { announced = announced, count = announced_count, photo = photo };
	end);

	local function handle_presence(event)
		local stanza = event.stanza;
		local to, from, t = stanza.attr.to, stanza.attr.from, stanza.attr.type;
		if not (to and from) then
			return true;
		end
		local contact = jid_bare(to);
		local online = contact.."/default";
		if t == "probe" then
			module:send(online_presence(photo, online, from));
			note_announced(online, from, true);
		elseif t == "subscribe" then
			module:send(st.presence({ from = contact, to = from, type = "subscribed" }));
			module:send(online_presence(photo, online, from));
			note_announced(online, from, true);
		elseif t == "unsubscribe" then
			module:send(st.presence({ from = online, to = from, type = "unavailable" }));
			note_announced(online, from, false);
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
local function start(shim, profile, client, forwarded, avatar)
	-- Whether the module answers vCard queries: it does unless iqs are POSTed.
	local serves_vcard = not forwarded.iq;
	if serves_vcard then
		answer_queries(client:identity(), avatar);
	elseif avatar then
		module:log("warn", "The avatar is not served: iq stanzas are POSTed to the webhook, which answers vCard "
			.."queries itself (leave \"iq\" out of %s for the module to serve it)", profile.stanzas_option);
	end
	if profile.answer_presence and not forwarded.presence then
		answer_presence(shim, serves_vcard and (avatar and avatar.sha1 or ""));
	end
end

return {
	start = start;
};
