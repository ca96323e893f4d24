"""AWX packaging: the credential types' injectors, the survey spec, and the execution environment files.

The credential types are rendered the way AWX renders them (``awx_jobs.inject_credential``: a Jinja sandbox,
0600 files, ``tower.filename``); the option file is then read by the MariaDB client's own parser
(``my_print_defaults``) and by the collection's connection code.  The execution environment is checked on the
built collection artifact with ``ansible-builder introspect`` and ``ansible-builder create``.
"""

import configparser
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import awx_jobs  # noqa: E402
from ansible_collections.wfu.multisite.plugins.module_utils.db import resolve  # noqa: E402
from ansible_collections.wfu.multisite.plugins.module_utils.run_options import RUN_OPTIONS  # noqa: E402

VENV_BIN = os.path.join(ROOT, ".venv", "bin")
# Characters an option file has to carry: space, #, ;, ', =, and the two MariaDB escapes " and \.
PASSWORD = 'Pa ss#1;it\'s="quoted"\\back=end'
# What the collection's option-file reader keeps exactly (it does not undo the \ escapes; see the report).
PLAIN_PASSWORD = "Pa ss#1;it's=fine"
CREDENTIAL_TYPES = {
    # file name: (extra var naming the file, env var naming the file)
    "wfu_source_db": ("wfu_prod_db_config_file", "WFU_SOURCE_DB_CONFIG_FILE"),
    "wfu_target_db": ("wfu_prod_db_config_file", "WFU_TARGET_DB_CONFIG_FILE"),
    "wfu_migration_db": ("wfu_migration_db_config_file", "WFU_MIGRATION_DB_CONFIG_FILE"),
}
SURVEY_VARIABLES = ["source_env", "target_env", "resume", "include_sites", "exclude_sites", "site_timeout",
                    "parallel", "pause_on_failure"]
AWX_QUESTION_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


def inputs_for(name, **changes):
    inputs = {"environment": "prod", "host": "db.example.edu", "port": "3307", "user": "wp_admin",
              "password": PASSWORD}
    if name == "wfu_migration_db":
        del inputs["environment"]
    inputs.update(changes)
    return {key: value for key, value in inputs.items() if value is not None}


def client_options(path):
    """The [client] options as the MariaDB clients read the file."""
    done = subprocess.run(["my_print_defaults", "--defaults-file=" + path, "client"], capture_output=True,
                          text=True, check=True)
    return dict(line[2:].split("=", 1) for line in done.stdout.splitlines())


@pytest.mark.parametrize("name", sorted(CREDENTIAL_TYPES))
def test_credential_type_injects_a_0600_client_option_file(tmp_path, name):
    credential_type = awx_jobs.load_credential_type(name)
    extra_var, env_var = CREDENTIAL_TYPES[name]
    fields = {field["id"]: field for field in credential_type["inputs"]["fields"]}

    assert credential_type["kind"] == "cloud"
    assert [key for key, field in fields.items() if field.get("secret")] == ["password"]
    assert {"host", "user", "password"} <= set(credential_type["inputs"]["required"])

    injection = awx_jobs.inject_credential(credential_type, inputs_for(name), str(tmp_path))
    (path,) = injection.files.values()
    assert os.listdir(tmp_path) == [os.path.basename(path)]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    assert parser.sections() == ["client"]
    assert sorted(parser["client"]) == ["host", "password", "port", "user"]
    assert client_options(path) == {"host": "db.example.edu", "port": "3307", "user": "wp_admin",
                                    "password": PASSWORD}

    # The password is in the file and nowhere else the job can show.
    assert injection.extra_vars == {extra_var: path}
    assert injection.env == {env_var: path}
    assert PASSWORD not in json.dumps([injection.extra_vars, injection.env])


@pytest.mark.parametrize("name", sorted(CREDENTIAL_TYPES))
def test_optional_inputs_port_default_and_tls_ca(tmp_path, name):
    credential_type = awx_jobs.load_credential_type(name)
    injection = awx_jobs.inject_credential(credential_type,
                                           inputs_for(name, port=None, ssl_ca="/etc/pki/db ca.pem"), str(tmp_path))
    (path,) = injection.files.values()

    assert client_options(path) == {"host": "db.example.edu", "port": "3306", "user": "wp_admin",
                                    "password": PASSWORD, "ssl-ca": "/etc/pki/db ca.pem"}


def test_the_collection_reads_the_option_file(tmp_path):
    credential_type = awx_jobs.load_credential_type("wfu_source_db")
    injection = awx_jobs.inject_credential(credential_type, inputs_for("wfu_source_db", password=PLAIN_PASSWORD,
                                                                       ssl_ca="/etc/pki/ca.pem"), str(tmp_path))
    (path,) = injection.files.values()

    settings = resolve({"config_file": path, "database": "wordpress"})
    assert (settings["host"], settings["port"], settings["user"], settings["password"], settings["database"]) == (
        "db.example.edu", 3307, "wp_admin", PLAIN_PASSWORD, "wordpress")
    assert settings["ssl_ca"] == "/etc/pki/ca.pem"


def test_survey_spec_asks_the_usual_extra_vars():
    with open(os.path.join(ROOT, "extensions", "awx", "survey_env_migrate.json"), encoding="utf-8") as handle:
        survey = json.load(handle)

    assert survey["name"] and survey["description"]
    questions = survey["spec"]
    assert [question["variable"] for question in questions] == SURVEY_VARIABLES
    for question in questions:
        assert question["type"] in AWX_QUESTION_TYPES, question
        assert question["question_name"] and question["question_description"], question
        default = question.get("default")
        if question["type"] == "integer":
            assert question["min"] <= default <= question["max"], question
        if question["type"] == "multiplechoice":
            choices = question["choices"].split("\n")
            assert default in choices or (default == "" and not question["required"]), question
        if default not in (None, "") and question["variable"] in RUN_OPTIONS:
            RUN_OPTIONS[question["variable"]].normalize(question["variable"], default)
        if question["type"] == "integer" and question["variable"] in RUN_OPTIONS:
            RUN_OPTIONS[question["variable"]].normalize(question["variable"], question["min"])


@pytest.fixture(scope="module")
def built_collection(tmp_path_factory):
    """The collection artifact, as ``ansible-galaxy collection build`` makes it, and its members."""
    out = tmp_path_factory.mktemp("build")
    subprocess.run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "build", "--force", "--output-path",
                    str(out), ROOT], check=True, capture_output=True, text=True)
    (tarball,) = out.glob("wfu-multisite-*.tar.gz")
    with tarfile.open(tarball) as archive:
        members = set(archive.getnames())
    return tarball, members


def test_the_artifact_ships_the_execution_environment_files(built_collection):
    _tarball, members = built_collection

    for path in ("meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt",
                 "plugins/inventory/sites.py", "extensions/awx/execution-environment.yml",
                 "extensions/awx/survey_env_migrate.json", "extensions/awx/credential_types/wfu_source_db.yml",
                 "extensions/awx/credential_types/wfu_target_db.yml",
                 "extensions/awx/credential_types/wfu_migration_db.yml"):
        assert path in members, path
    assert "requirements.txt" not in members


def test_ansible_builder_introspect_finds_pymysql_and_the_mariadb_client(built_collection, tmp_path):
    tarball, _members = built_collection
    collections = tmp_path / "collections"
    subprocess.run([os.path.join(VENV_BIN, "ansible-galaxy"), "collection", "install", "--force", "-p", str(collections),
                    str(tarball)], check=True, capture_output=True, text=True)

    done = subprocess.run([os.path.join(VENV_BIN, "ansible-builder"), "introspect", "--sanitize", str(collections)],
                          check=True, capture_output=True, text=True)
    found = yaml.safe_load(done.stdout)
    python = [line.split("#")[0].strip() for line in found["python"]]
    system = [line.split("#")[0].strip() for line in found["system"]]
    assert any(line.startswith("PyMySQL") for line in python), python
    assert any(line.startswith("boto3") for line in python), python
    assert "mariadb-client [platform:dpkg]" in system and "mariadb [platform:rpm]" in system, system
    assert any(line.startswith("rsync") for line in system), system
    assert all("from collection wfu.multisite" in line for line in found["python"] + found["system"])


def test_ansible_builder_create_makes_a_build_context(built_collection, tmp_path):
    """The image definition installs the collection from its artifact (copied in beside the definition, as the
    definition's comment says) and needs no container engine to write its context."""
    tarball, _members = built_collection
    shutil.copy(os.path.join(ROOT, "extensions", "awx", "execution-environment.yml"), tmp_path)
    shutil.copy(tarball, tmp_path / "wfu-multisite.tar.gz")
    context = tmp_path / "context"

    subprocess.run([os.path.join(VENV_BIN, "ansible-builder"), "create", "-f",
                    str(tmp_path / "execution-environment.yml"), "--context", str(context)],
                   check=True, capture_output=True, text=True)

    (instructions,) = [context / name for name in ("Containerfile", "Dockerfile") if (context / name).exists()]
    text = instructions.read_text()
    assert "ansible-galaxy collection install" in text
    assert "introspect.py introspect" in text
    assert (context / "_build" / "collections" / "wfu-multisite.tar.gz").exists()
    with open(context / "_build" / "requirements.yml", encoding="utf-8") as handle:
        assert yaml.safe_load(handle) == {"collections": [{"name": "collections/wfu-multisite.tar.gz",
                                                           "type": "file"}]}
