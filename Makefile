# The two commands a user needs:  `make up`  (run everything)  and  `make test`  (pass the tests).
# Both install what is missing first: a Python virtualenv in .venv and the Kafka jars in .jvm (Maven).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up down status test lint audit lock install jars clean

up: install
	$(BIN)/rtfd up

down:
	$(BIN)/rtfd down

status:
	$(BIN)/rtfd status

# Two pytest processes: the suite, then the short chaos set (tests/chaos, marker `chaos`) against a stack of
# its own. The set kills and restarts components; in the suite's process it ended once in a segmentation fault
# (gRPC threads of the in-process PyFlink mini-cluster, then process starts; docs/reliability.md).
test: install lint
	$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)
	$(BIN)/pytest -p no:cacheprovider -m chaos tests/chaos $(CHAOS_PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

# Known vulnerabilities of the pinned dependency set (pip-audit; see docs/security.md). No ignores so far:
# add `--ignore-vuln ID` here only with a comment saying why that vulnerability cannot reach rtfd.
audit: install
	$(BIN)/python -m rtfd.security.audit requirements.lock

# Re-pin requirements.lock from the virtualenv after changing pyproject.toml's dependencies.
lock: install
	{ echo "# The resolved dependency set of .venv (pip install -e '.[test]'), for \`make audit\` (pip-audit)."; \
	  echo "# Regenerate after changing pyproject.toml: make lock"; \
	  $(BIN)/pip freeze --exclude-editable; } > requirements.lock

install: $(VENV)/.installed jars

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Python 3.11+ is required (found: $$($(PYTHON) --version)); set PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

jars: .jvm/kafka/.resolved .jvm/flink/.resolved

.jvm/kafka/.resolved: jvm/kafka/pom.xml
	@command -v mvn >/dev/null || { echo "Maven is required to fetch the Kafka jars: apt-get install maven / brew install maven"; exit 1; }
	@command -v java >/dev/null || { echo "Java 17+ is required: apt-get install openjdk-17-jre-headless / brew install openjdk@17"; exit 1; }
	rm -rf .jvm/kafka
	mvn -q -B -f jvm/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/.jvm/kafka
	touch $@

.jvm/flink/.resolved: jvm/flink/pom.xml
	rm -rf .jvm/flink
	mvn -q -B -f jvm/flink/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	  -DexcludeArtifactIds=flink-connector-base -DoutputDirectory=$(CURDIR)/.jvm/flink
	touch $@

clean:
	rm -rf $(VENV) .jvm
