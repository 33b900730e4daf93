"""The module comes from the luarocks tree alone (installer_plugin_path)."""

import glob
import os
import re
import shutil
import subprocess

from conftest import BOT, LUA_VERSION, REPO_ROOT, ROCKSPEC
from e2e_prosody import Prosody


def test_tree_holds_module_and_native_library(plugin_tree):
    assert os.path.isfile(os.path.join(plugin_tree, "share", "lua", LUA_VERSION, "mod_component_http.lua"))
    libs = os.listdir(os.path.join(plugin_tree, "lib", "lua", LUA_VERSION))
    assert any(name.endswith(".so") for name in libs), libs


def test_loaded_from_installer_plugin_path_only(prosody_factory, webhook, connect, plugin_tree):
    prosody = prosody_factory({BOT: {"component_post_url": webhook.url()}})
    # Prosody itself says where it loaded the module from: the LuaRocks tree.
    r = prosody.shell("module:info('component_http', 'bot.localhost')")
    assert r.returncode == 0, r.stdout + r.stderr
    path = os.path.realpath(re.search(r"path: (\S+)", r.stdout).group(1))
    assert path == os.path.realpath(os.path.join(plugin_tree, "share", "lua", LUA_VERSION, "mod_component_http.lua")), r.stdout
    alice = connect(prosody)
    webhook.respond_json({"body": "installed"})
    since = alice.mark()
    alice.send_message("echo@bot.localhost", "are you there?")
    assert alice.wait_for(lambda s: s.name == "message", since=since).body == "installed"


def test_prosodyctl_install_of_the_packed_rock(webhook, connect, tmp_path):
    """The README's other install path: build a binary rock as a user, then `prosodyctl install`
    it, which runs LuaRocks for Prosody's own Lua into installer_plugin_path."""
    r = subprocess.run(["luarocks", "--lua-version", LUA_VERSION, "make", "--pack-binary-rock", ROCKSPEC],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    (rock,) = glob.glob(os.path.join(REPO_ROOT, "mod_component_http-*.rock"))
    shutil.move(rock, tmp_path)
    rock = os.path.join(tmp_path, os.path.basename(rock))
    tree = os.path.join(tmp_path, "plugins")
    prosody = Prosody(tree, {BOT: {"component_post_url": webhook.url()}})
    try:
        r = prosody.prosodyctl("install", rock, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        prosody.start()
        alice = connect(prosody)
        webhook.respond_json({"body": "installed by prosodyctl"})
        since = alice.mark()
        alice.send_message("echo@bot.localhost", "hello")
        assert alice.wait_for(lambda s: s.name == "message", since=since).body == "installed by prosodyctl"
    finally:
        prosody.cleanup()
