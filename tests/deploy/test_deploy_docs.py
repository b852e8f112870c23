"""docs/deploy.md names only files that exist, and states the facts the files fix."""

from __future__ import annotations

import re

from tests.deploy.support import REPO, dockerfile_stages

DOC = REPO / "docs" / "deploy.md"


def test_every_repository_path_named_exists() -> None:
    text = DOC.read_text()
    paths = set(re.findall(r"`((?:deploy|scripts|alerts|tests)/[\w./-]*)`", text))
    assert len(paths) > 5
    missing = sorted(p for p in paths if "*" not in p and not (REPO / p).exists())
    assert not missing, missing


def test_documented_uid_port_and_config_path_match_the_dockerfile() -> None:
    text = DOC.read_text()
    final = dockerfile_stages()[1][-1]
    uid = final.last("USER").split(":")[0]
    assert f"uid/gid **{uid}**" in text
    assert f"EXPOSE {final.last('EXPOSE')}" in text
    assert "`/etc/tierwatch/tierwatch.yaml`" in text
    assert "## Scale-out by sharding" in text
