"""The module comes from the luarocks tree alone (installer_plugin_path)."""

import os
import re

from conftest import BOT


def test_tree_holds_module_and_native_library(plugin_tree):
    assert os.path.isfile(os.path.join(plugin_tree, "share", "lua", "5.4", "mod_component_http.lua"))
    libs = os.listdir(os.path.join(plugin_tree, "lib", "lua", "5.4"))
    assert any(name.endswith(".so") for name in libs), libs


def test_loaded_from_installer_plugin_path_only(prosody_factory, webhook, connect, plugin_tree):
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url()}})
    # Prosody itself says where it loaded the module from: the LuaRocks tree.
    r = prosody.shell("module:info('component_http', 'bot.localhost')")
    assert r.returncode == 0, r.stdout + r.stderr
    path = os.path.realpath(re.search(r"path: (\S+)", r.stdout).group(1))
    assert path == os.path.realpath(os.path.join(plugin_tree, "share", "lua", "5.4", "mod_component_http.lua")), r.stdout
    alice = connect(prosody)
    webhook.respond_json({"body": "installed"})
    since = alice.mark()
    alice.send_message("echo@bot.localhost", "are you there?")
    assert alice.wait_for(lambda s: s.name == "message", since=since).body == "installed"
