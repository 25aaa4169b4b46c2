"""The pytest plugin: fixtures that give a user's test suite a running emulator and a client bound to it."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

# pytester's in-process runs drop modules first imported inside them; cryptography's compiled
# bindings keep references to the first import, so everything the inner suites use loads here.
import sut_soap.async_client
import sut_soap.client
import sut_soap.testing._asyncio_fixtures
import sut_soap.testing.emulator
import sut_soap.transport._aio  # noqa: F401

pytestmark = pytest.mark.network


def test_plugin_is_registered_through_the_pytest11_entry_point() -> None:
    """Installing sut-soap registers sut_soap.testing.pytest_plugin with pytest, no conftest line needed."""
    plugins = {e.name: e.value for e in entry_points(group="pytest11")}
    assert plugins.get("sut_soap") == "sut_soap.testing.pytest_plugin"


def test_importing_the_plugin_loads_nothing_heavy() -> None:
    """pytest loads the plugin in every run, so importing it loads neither the emulator nor zeep, lxml or PyJWT."""
    probe = (
        "import sys, sut_soap.testing.pytest_plugin\n"
        "heavy = [m for m in ('zeep', 'lxml', 'jwt', 'requests', 'cryptography', 'sut_soap.testing.emulator') "
        "if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_client_fixture_gets_a_ticket_from_the_emulator(pytester: pytest.Pytester) -> None:
    """superoffice_client authenticates the superoffice_tenant against superoffice_emulator over loopback."""
    pytester.makepyfile(
        """
        def test_ticket(superoffice_client, superoffice_tenant, superoffice_emulator):
            ticket = superoffice_client.get_ticket(
                context_identifier=superoffice_tenant.context_identifier,
                system_user_token=superoffice_tenant.system_user_token,
            )
            assert ticket.ticket.startswith("7T:")
            assert ticket.context_identifier == superoffice_tenant.context_identifier
            assert superoffice_emulator.exchange_count == 1
            assert superoffice_client.endpoint == superoffice_emulator.endpoint
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_faults_and_counters_do_not_leak_into_the_next_test(pytester: pytest.Pytester) -> None:
    """A fault injected, a tenant added and a key rotated in one test are gone in the next; counters restart."""
    pytester.makepyfile(
        """
        import pytest
        from sut_soap import TransportError
        from sut_soap.testing import Fault

        def test_first(superoffice_client, superoffice_tenant, superoffice_emulator):
            superoffice_emulator.inject(Fault.SERVICE_UNAVAILABLE_HTML)
            superoffice_emulator.add_tenant("Cust99", system_user_token="Other Sync-x")
            superoffice_emulator.rotate_key()
            with pytest.raises(TransportError):
                superoffice_client.authenticate(
                    context_identifier=superoffice_tenant.context_identifier,
                    system_user_token=superoffice_tenant.system_user_token,
                )

        def test_second(superoffice_client, superoffice_tenant, superoffice_emulator):
            assert superoffice_emulator.exchange_count == 0
            assert superoffice_emulator.requests == []
            assert set(superoffice_emulator.tenants) == {superoffice_tenant.context_identifier}
            assert len(superoffice_emulator.jwks()["keys"]) == 1
            superoffice_client.authenticate(
                context_identifier=superoffice_tenant.context_identifier,
                system_user_token=superoffice_tenant.system_user_token,
            )
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_one_emulator_serves_the_whole_session(pytester: pytest.Pytester) -> None:
    """Every test of a session talks to the same running server, and it is stopped when the session ends."""
    pytester.makepyfile(
        """
        seen = []

        def test_a(superoffice_emulator):
            seen.append(superoffice_emulator)

        def test_b(superoffice_emulator):
            assert superoffice_emulator is seen[0] and superoffice_emulator.running
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_client_fixture_is_closed_after_the_test(pytester: pytest.Pytester) -> None:
    """The client a test received is closed once that test is over."""
    pytester.makepyfile(
        """
        closed = []

        def test_use(superoffice_client):
            close = superoffice_client.close
            superoffice_client.close = lambda: (closed.append(True), close())
            assert closed == []

        def test_closed_afterwards():
            assert closed == [True]
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_conftest_can_override_a_fixture(pytester: pytest.Pytester) -> None:
    """A suite's own conftest fixture of the same name wins over the plugin's."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def superoffice_client_secret():
            return "my-own-secret"
        """
    )
    pytester.makepyfile(
        """
        def test_secret(superoffice_client_secret):
            assert superoffice_client_secret == "my-own-secret"
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    """-p no:sut_soap unloads the plugin: its fixtures are then unknown."""
    pytester.makepyfile(
        """
        def test_needs(superoffice_emulator):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:sut_soap")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'superoffice_emulator' not found*"])


def _asyncio_ini(pytester: pytest.Pytester) -> None:
    """A suite configured as pytest-asyncio asks: strict mode, each fixture's loop the test's own."""
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")


def test_the_async_fixtures_module_loads_nothing_heavy() -> None:
    """With pytest-asyncio active the plugin imports its async fixture module, which loads neither aiohttp nor the client."""
    probe = (
        "import sys, sut_soap.testing._asyncio_fixtures\n"
        "heavy = [m for m in ('aiohttp', 'zeep', 'lxml', 'jwt', 'cryptography', 'sut_soap.async_client') "
        "if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_async_client_fixture_gets_a_ticket_on_the_tests_loop(pytester: pytest.Pytester) -> None:
    """superoffice_async_client, in strict mode and marked @pytest.mark.asyncio, gets a ticket from the emulator."""
    pytester.makepyfile(
        """
        import pytest
        from sut_soap import AsyncSystemUserClient

        @pytest.mark.asyncio
        async def test_ticket(superoffice_async_client, superoffice_tenant, superoffice_emulator):
            assert isinstance(superoffice_async_client, AsyncSystemUserClient)
            ticket = await superoffice_async_client.get_ticket(
                context_identifier=superoffice_tenant.context_identifier,
                system_user_token=superoffice_tenant.system_user_token,
            )
            assert ticket.ticket.startswith("7T:")
            assert superoffice_emulator.exchange_count == 1
            assert superoffice_async_client.endpoint == superoffice_emulator.endpoint
        """
    )
    _asyncio_ini(pytester)
    pytester.runpytest("-W", "error").assert_outcomes(passed=1)


def test_async_client_fixture_sees_the_emulator_reset_between_tests(pytester: pytest.Pytester) -> None:
    """A fault injected in one async test is gone in the next, whose async client starts with an empty cache."""
    pytester.makepyfile(
        """
        import pytest
        from sut_soap import TransportError
        from sut_soap.testing import Fault

        @pytest.mark.asyncio
        async def test_first(superoffice_async_client, superoffice_tenant, superoffice_emulator):
            superoffice_emulator.inject(Fault.SERVICE_UNAVAILABLE_HTML)
            with pytest.raises(TransportError):
                await superoffice_async_client.authenticate(
                    context_identifier=superoffice_tenant.context_identifier,
                    system_user_token=superoffice_tenant.system_user_token,
                )

        @pytest.mark.asyncio
        async def test_second(superoffice_async_client, superoffice_tenant, superoffice_emulator):
            assert superoffice_emulator.exchange_count == 0
            await superoffice_async_client.get_ticket(
                context_identifier=superoffice_tenant.context_identifier,
                system_user_token=superoffice_tenant.system_user_token,
            )
            assert superoffice_emulator.exchange_count == 1
        """
    )
    _asyncio_ini(pytester)
    pytester.runpytest().assert_outcomes(passed=2)


def test_async_client_fixture_is_closed_on_the_tests_loop_after_the_test(pytester: pytest.Pytester) -> None:
    """The async client's aclose is awaited after its test, on the loop the test ran on."""
    pytester.makepyfile(
        """
        import asyncio
        import pytest

        closed = []

        @pytest.mark.asyncio
        async def test_use(superoffice_async_client, superoffice_tenant):
            await superoffice_async_client.get_ticket(
                context_identifier=superoffice_tenant.context_identifier,
                system_user_token=superoffice_tenant.system_user_token,
            )
            aclose, loop = superoffice_async_client.aclose, asyncio.get_running_loop()

            async def watched():
                closed.append(asyncio.get_running_loop() is loop)
                await aclose()

            superoffice_async_client.aclose = watched
            assert closed == []

        def test_closed_afterwards():
            assert closed == [True]
        """
    )
    _asyncio_ini(pytester)
    pytester.runpytest().assert_outcomes(passed=2)


def test_async_client_fixture_without_pytest_asyncio_says_what_to_install(pytester: pytest.Pytester) -> None:
    """Without pytest-asyncio (-p no:asyncio) a test asking for the async fixture errors in one line naming it, no traceback."""
    pytester.makepyfile(
        """
        def test_needs(superoffice_async_client):
            pass

        def test_sync_fixtures_still_work(superoffice_client):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:asyncio")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*superoffice_async_client is an async fixture of pytest-asyncio*pip install pytest-asyncio*"])
    text = result.stdout.str()
    assert "Traceback" not in text and "pytest_plugin.py" not in text


def test_async_client_fixture_without_aiohttp_says_what_to_install(pytester: pytest.Pytester) -> None:
    """Without aiohttp the async fixture errors in one line naming sut-soap[async], no traceback of the client."""
    pytester.makeconftest(
        """
        import sys

        sys.modules["sut_soap.transport._aio"] = None
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.asyncio
        async def test_needs(superoffice_async_client):
            pass
        """
    )
    _asyncio_ini(pytester)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*superoffice_async_client needs aiohttp*pip install 'sut-soap?async?'*"])
    text = result.stdout.str()
    assert "Traceback" not in text and "During handling" not in text and "_options.py" not in text
