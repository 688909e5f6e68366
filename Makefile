# The two commands a user needs:  `make up`  (run everything)  and  `make test`  (pass the tests).
# Both install what is missing first: a Python virtualenv in .venv and the Kafka jars in .jvm (Maven).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: up down status test lint install jars clean

up: install
	$(BIN)/rtfd up

down:
	$(BIN)/rtfd down

status:
	$(BIN)/rtfd status

test: install lint
	$(BIN)/pytest -p no:cacheprovider

lint: install
	$(BIN)/ruff check .

install: $(VENV)/.installed jars

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

jars: .jvm/kafka/.resolved

.jvm/kafka/.resolved: jvm/kafka/pom.xml
	rm -rf .jvm/kafka
	mvn -q -B -f jvm/kafka/pom.xml dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/.jvm/kafka
	touch $@

clean:
	rm -rf $(VENV) .jvm
