# Every target creates .venv on demand; only python3 and make are assumed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit bench fuzz mutate audit clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,dev,cli,redis,async]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sut-soap demo

lint: $(STAMP)
	$(BIN)/ruff check sut_soap tests bench fuzz
	$(BIN)/mypy --strict sut_soap
	$(BIN)/bandit -q -r sut_soap --severity-level medium

# Coverage gates, both coverage's own: fail_under = 98 (overall) in [tool.coverage.report] of
# pyproject.toml, which pytest-cov applies (issue 7 asks for 95%; the suite is at 99%, and the
# floor keeps it there), then 100% line and branch coverage of the security modules: signing,
# key loading, the SOAP and REST layers (request, answer parsing, redaction), JWT validation, the
# hardened XML parser, the errors and the cache, the async client and the steps both clients run;
# the tenant state reader and the auth object for the tenant's API (its decisions and both
# adapters). A `# pragma: no cover` needs the lead's approval.
GATED := sut_soap/_clock.py,sut_soap/_steps.py,sut_soap/async_client.py,sut_soap/transport/*.py,sut_soap/_flight.py,sut_soap/_text.py,sut_soap/contract.py,sut_soap/signing.py,sut_soap/keys.py,sut_soap/keyexport.py,sut_soap/soap.py,sut_soap/_answer.py,sut_soap/rest.py,sut_soap/tokens.py,sut_soap/keysources.py,sut_soap/safexml.py,sut_soap/errors.py,sut_soap/cache.py,sut_soap/_fork.py,sut_soap/_watchdog.py,sut_soap/_deadline.py,sut_soap/cli/tenantfile.py,sut_soap/cli/warm.py,sut_soap/redis_store.py,sut_soap/_redis_core.py,sut_soap/async_redis_store.py,sut_soap/tenantstate.py,sut_soap/apiauth/*.py
unit: $(STAMP)
	$(BIN)/python -m pytest -q --cov --cov-report=term
	$(BIN)/coverage report --include=$(GATED) --no-skip-covered --fail-under=100

test: lint unit

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .coverage mutants

# Longer coverage-guided runs with atheris (not part of make test): FUZZ_SECONDS per harness.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'atheris>=2.3'
	mkdir -p .fuzz/answer .fuzz/jwt
	$(BIN)/python fuzz/harness.py answer .fuzz/answer fuzz/corpus/answer -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=.fuzz/
	$(BIN)/python fuzz/harness.py jwt .fuzz/jwt fuzz/corpus/jwt -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=.fuzz/

# Mutation testing with mutmut 3 (issue 7, not part of make test; settings in [tool.mutmut] of
# pyproject.toml). The goal: >= 90% killed on JWT validation (tokens), answer parsing and
# redaction (soap), and no survivor on the alg/iss/aud/exp/nbf/iat/ctx comparisons or the
# endpoint checks (environments). mutmut works in ./mutants/ and resumes where it stopped. Read
# the verdict in mutmut's own output: `mutmut results` lists every mutant not killed (`mutmut show
# NAME` gives its diff), mutants/mutmut-cicd-stats.json has killed / survived / total.
# MUTANTS narrows the run to mutant names (globs), e.g. MUTANTS='sut_soap.environments.*'.
MUTANTS ?=
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'mutmut>=3.8,<4'
	PYTHONDONTWRITEBYTECODE=1 $(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results
	$(BIN)/mutmut export-cicd-stats
	cat mutants/mutmut-cicd-stats.json

# Known vulnerabilities in everything installed in .venv except sut-soap itself. Only make audit
# runs it: it asks a vulnerability service over the network, and make test never leaves loopback.
# --strict: a package pip-audit cannot audit (say "not found", behind a mirror that hides the
# per-version JSON) fails the run instead of passing unchecked. `pip freeze --exclude-editable`
# leaves out the editable sut-soap, which would be such a package; --all keeps pip and setuptools.
# AUDIT_ARGS passes more pip-audit options, e.g. AUDIT_ARGS='-s osv' for the OSV service.
#
# Accepted advisories: only what cannot be fixed yet, each as a comment with its reason and the
# date the acceptance ends, right above its --ignore-vuln line:
#   # ID until YYYY-MM-DD: why it cannot be fixed yet
#   AUDIT_IGNORE += --ignore-vuln ID
# ID is the advisory's id or any alias (pip-audit matches both). pip-audit knows no end dates, so
# tests/test_audit.py holds this list to that form and fails make test once a date has passed.
# None is accepted today.
AUDIT_IGNORE :=
AUDIT_ARGS ?=
audit: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable --all > $(VENV)/audit-requirements.txt
	$(BIN)/pip-audit --strict --no-deps --disable-pip --progress-spinner off \
		-r $(VENV)/audit-requirements.txt $(AUDIT_IGNORE) $(AUDIT_ARGS)
