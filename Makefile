# The two commands a user needs:  `make up`  (run everything)  and  `make test`  (pass the tests).
# Both install what is missing first: a Python virtualenv in .venv, the Kafka and Flink connector jars in .jvm
# (Maven) and the job's Java functions (javac).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up down status test chaos-test lint audit lock install jars clean

up: install
	$(BIN)/rtfd up

down:
	$(BIN)/rtfd down

status:
	$(BIN)/rtfd status

# Two pytest processes: the suite, then the short chaos set (tests/chaos, marker `chaos`, docs/reliability.md)
# against a fresh session stack of its own. Both always run; the target fails if either failed.
test: install lint
	rc=0; \
	$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS) || rc=$$?; \
	$(BIN)/pytest -p no:cacheprovider -m chaos tests/chaos $(CHAOS_PYTEST_ARGS) || rc=$$?; \
	exit $$rc

# The short chaos set alone (`make test` runs it too).
chaos-test: install
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

jars: .jvm/kafka/.resolved .jvm/flink/.resolved .jvm/functions/rtfd-flink-functions.jar

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

# The job's own Java functions (jvm/functions), compiled against the Flink inside the apache-flink wheel and
# the connector jars (Avro as shaded into the avro-confluent format jar).
FUNCTIONS_SRC := $(wildcard jvm/functions/src/io/rtfd/flink/*.java)
.jvm/functions/rtfd-flink-functions.jar: $(FUNCTIONS_SRC) $(VENV)/.installed .jvm/flink/.resolved
	@command -v javac >/dev/null || { echo "A JDK 17+ (javac) is required to compile jvm/functions: apt-get install openjdk-17-jdk-headless / brew install openjdk@17"; exit 1; }
	rm -rf .jvm/functions && mkdir -p .jvm/functions/classes
	javac --release 17 -nowarn -cp "$$($(BIN)/python -c 'import os, pyflink; print(os.path.dirname(pyflink.__file__))')/lib/*:.jvm/flink/*" \
	  -d .jvm/functions/classes $(FUNCTIONS_SRC)
	jar cf $@ -C .jvm/functions/classes .
	rm -rf .jvm/functions/classes

clean:
	rm -rf $(VENV) .jvm
