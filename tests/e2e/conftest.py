"""Fixtures of the mod_component_http end-to-end suite.

Environment:
  E2E_PLUGIN_TREE=DIR  reuse an existing luarocks tree instead of installing
  E2E_KEEP=1           keep temporary directories (configs, logs) for inspection
"""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from e2e_prosody import Prosody  # noqa: E402
from e2e_util import tail  # noqa: E402
from e2e_raw_webhook import RawWebhook  # noqa: E402
from e2e_webhook import EchoWebhookProcess, PhpEchoBot, ScriptedWebhook, echo_php_source_path  # noqa: E402
from e2e_xmpp import XmppClient  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
ROCKSPEC = os.path.join("rockspec", "mod_component_http-0.1.0-1.rockspec")
# The Lua the Prosody under test runs on, and so the one the rock is built for.
LUA_VERSION = os.environ.get("E2E_LUA_VERSION", "5.4")

USERS = {"alice": "pw-alice", "bob": "pw-bob"}
BOT = "bot.localhost"
BOT2 = "bot2.localhost"


# -- failure reporting -------------------------------------------------------
@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _test_failed(node):
    return any(getattr(node, "rep_" + w, None) is not None and getattr(node, "rep_" + w).failed
               for w in ("setup", "call"))


def _dump(prosody, why):
    sys.stderr.write(f"\n===== Prosody diagnostics ({why}) =====\n{prosody.diagnostics(120)}\n")


# -- the module, installed the way users do ------------------------------------
@pytest.fixture(scope="session")
def plugin_tree():
    """A luarocks tree holding mod_component_http, for installer_plugin_path."""
    given = os.environ.get("E2E_PLUGIN_TREE")
    if given:
        if not os.path.isdir(given):
            pytest.fail(f"E2E_PLUGIN_TREE={given} is not a directory")
        yield os.path.abspath(given)
        return

    tree_parent = tempfile.mkdtemp(prefix="e2e-tree-")
    tree = os.path.join(tree_parent, "tree")
    try:
        if not os.path.exists(os.path.join(REPO_ROOT, ROCKSPEC)):
            pytest.fail(f"{ROCKSPEC} does not exist in {REPO_ROOT}")
        log_path = os.path.join(tree_parent, "luarocks-make.log")
        with open(log_path, "wb") as log:
            r = subprocess.run(
                ["luarocks", "--lua-version", LUA_VERSION, "make", "--tree", tree, ROCKSPEC],
                cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                timeout=1800,
            )
        if r.returncode != 0:
            pytest.fail(f"luarocks make failed with {r.returncode}:\n{tail(log_path, 60)}")
        yield tree
    finally:
        if not os.environ.get("E2E_KEEP"):
            shutil.rmtree(tree_parent, ignore_errors=True)


# -- Prosody -----------------------------------------------------------------
class _ProsodyFactory:
    def __init__(self, plugin_tree):
        self.plugin_tree = plugin_tree
        self.instances = []

    def __call__(self, components, users=None, **kw):
        """Start a Prosody with the given {component host: options}."""
        p = Prosody(self.plugin_tree, components, users=USERS if users is None else users, **kw)
        self.instances.append(p)
        p.start()
        return p

    def finish(self, failed):
        for p in self.instances:
            try:
                if failed:
                    _dump(p, "test failed")
            finally:
                p.cleanup()


@pytest.fixture
def prosody_factory(plugin_tree, request):
    factory = _ProsodyFactory(plugin_tree)
    yield factory
    factory.finish(_test_failed(request.node))


@pytest.fixture(scope="module")
def module_prosody_factory(plugin_tree):
    """Like prosody_factory, but instances live for the whole test module.

    Failing tests print the shared instance's log themselves (see `hook`).
    """
    factory = _ProsodyFactory(plugin_tree)
    yield factory
    factory.finish(False)


# -- webhooks ----------------------------------------------------------------
class _Closer:
    def __init__(self, make):
        self.make = make
        self.items = []

    def __call__(self, *a, **kw):
        item = self.make(*a, **kw)
        self.items.append(item)
        return item

    def close_all(self):
        for item in self.items:
            item.close()


def _closing(make):
    """A factory fixture's body (`yield from` it): yields a factory of `make(...)` items, closes
    every item at teardown and returns them."""
    c = _Closer(make)
    yield c
    c.close_all()
    return c.items


@pytest.fixture
def make_webhook():
    """Factory of ScriptedWebhook servers (closed at teardown)."""
    yield from _closing(ScriptedWebhook)


@pytest.fixture
def webhook(make_webhook):
    return make_webhook()


@pytest.fixture(scope="module")
def module_webhook():
    w = ScriptedWebhook()
    yield w
    w.close()


@pytest.fixture(scope="session")
def echo_php_path():
    path = echo_php_source_path(REPO_ROOT)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing")
    return path


@pytest.fixture
def php_echo(echo_php_path):
    bot = PhpEchoBot(echo_php_path)
    yield bot
    bot.close()


@pytest.fixture
def echo_process():
    """Factory of EchoWebhookProcess webhooks (closed at teardown): echo bots to kill and restart."""
    yield from _closing(EchoWebhookProcess)


@pytest.fixture
def raw_hook():
    """Factory of RawWebhook servers (closed at teardown): webhooks that misbehave on raw sockets.
    A handler that raised fails the test."""
    hooks = yield from _closing(RawWebhook)
    for h in hooks:
        assert not h.handler_errors, h.handler_errors


# -- XMPP clients -------------------------------------------------------------
@pytest.fixture
def connect():
    """connect(prosody, user="alice", **kw) -> logged-in XmppClient."""
    clients = []

    def _connect(prosody, user="alice", **kw):
        c = XmppClient(f"{user}@localhost", prosody.users[user], prosody.c2s_port, **kw)
        clients.append(c)
        return c

    yield _connect
    for c in clients:
        c.close()


@pytest.fixture
def closed_port_url():
    from e2e_util import closed_port
    return f"http://127.0.0.1:{closed_port()}/hook"


# -- one Prosody + webhook shared by a test module -------------------------------
@pytest.fixture(scope="module")
def shared_prosody(module_prosody_factory, module_webhook, request):
    """Prosody whose bot.localhost posts to module_webhook.

    A test module may set BOT_OPTIONS = {...} for extra component options.
    """
    opts = {"component_post_url": module_webhook.url()}
    opts.update(getattr(request.module, "BOT_OPTIONS", {}))
    return module_prosody_factory({BOT: opts})


@pytest.fixture
def hook(module_webhook, shared_prosody, request):
    """The shared webhook, reset (no requests recorded, answers 204)."""
    module_webhook.reset()
    yield module_webhook
    if _test_failed(request.node):
        _dump(shared_prosody, f"{request.node.name} failed; Prosody is shared by {request.module.__name__}")
    assert not module_webhook.handler_errors, module_webhook.handler_errors


@pytest.fixture
def alice(shared_prosody, connect):
    return connect(shared_prosody, "alice")


@pytest.fixture
def bob(shared_prosody, connect):
    return connect(shared_prosody, "bob")
