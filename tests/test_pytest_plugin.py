"""The pytest plugin: fixtures that give a user's test suite a running emulator and a client bound to it."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

# pytester's in-process runs drop modules first imported inside them; cryptography's compiled
# bindings keep references to the first import, so everything the inner suites use loads here.
import sut_soap.client
import sut_soap.testing.emulator  # noqa: F401

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
