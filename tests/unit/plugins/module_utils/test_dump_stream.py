"""The copy engine's pure parts: the dump-stream rewriter, name mapping, and the argv of the client tools."""

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.wfu.multisite.plugins.module_utils import copy_engine
from ansible_collections.wfu.multisite.plugins.module_utils.copy_engine import (
    DumpRewriter, destination_names, dump_command, is_mysql_tool, load_command, rewrite_collations)
from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError

# What MySQL 8.0's mysqldump writes for a WordPress table (extended INSERTs on one line), written for these
# tests.  A post body quotes SQL that must survive untouched, as must the line that looks like a statement head
# inside a value (dumps escape newlines, so it stays on the INSERT line).
MYSQL8_DUMP = (
    b"-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)\n"
    b"/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;\n"
    b"/*!50503 SET NAMES utf8mb4 */;\n"
    b"/*!40014 SET @OLD_FOREIGN_KEY_CHECKS=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n"
    b"DROP TABLE IF EXISTS `wp_5_posts`;\n"
    b"/*!40101 SET @saved_cs_client     = @@character_set_client */;\n"
    b"/*!50503 SET character_set_client = utf8mb4 */;\n"
    b"CREATE TABLE `wp_5_posts` (\n"
    b"  `ID` bigint unsigned NOT NULL AUTO_INCREMENT,\n"
    b"  `post_content` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_ai_ci NOT NULL,\n"
    b"  `post_title` text COLLATE utf8mb4_unicode_520_ci NOT NULL,\n"
    b"  `post_name` varchar(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin NOT NULL DEFAULT '',\n"
    b"  PRIMARY KEY (`ID`)\n"
    b") ENGINE=InnoDB AUTO_INCREMENT=3 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci;\n"
    b"/*!40101 SET character_set_client = @saved_cs_client */;\n"
    b"LOCK TABLES `wp_5_posts` WRITE;\n"
    b"/*!40000 ALTER TABLE `wp_5_posts` DISABLE KEYS */;\n"
    b"INSERT INTO `wp_5_posts` VALUES (1,'Use COLLATE=utf8mb4_0900_ai_ci\\nINSERT INTO `wp_5_posts` VALUES','Hi','a'),"
    b"(2,'\xf0\x9f\x98\x80 CREATE TABLE `wp_5_posts` (','T','b');\n"
    b"/*!40000 ALTER TABLE `wp_5_posts` ENABLE KEYS */;\n"
    b"UNLOCK TABLES;\n"
    b"DROP TABLE IF EXISTS `wp_5_postmeta`;\n"
    b"CREATE TABLE `wp_5_postmeta` (\n"
    b"  `meta_id` bigint unsigned NOT NULL AUTO_INCREMENT,\n"
    b"  PRIMARY KEY (`meta_id`)\n"
    b") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;\n"
    b"INSERT INTO `wp_5_postmeta` VALUES (1),(2);\n"
    b"DROP TABLE IF EXISTS `wp_5_posts_extra`;\n"
    b"CREATE TABLE `wp_5_posts_extra` (\n"
    b"  `id` int NOT NULL\n"
    b") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci;\n"
    b"INSERT INTO `wp_5_posts_extra` VALUES (1);\n"
)

RENAMES = {"wp_5_posts": "wfu_stage_wp_5_posts", "wp_5_postmeta": "wfu_stage_wp_5_postmeta"}
COLLATIONS = {"utf8mb4_0900_ai_ci": "utf8mb4_unicode_520_ci", "utf8mb4_0900_bin": "utf8mb4_bin"}


def rewrite(data, chunks, **kwargs):
    rewriter = DumpRewriter(**kwargs)
    out = [rewriter.feed(data[start:end]) for start, end in zip(chunks, chunks[1:] + [len(data)])]
    return b"".join(out) + rewriter.finish()


def test_renames_touch_only_the_statement_heads_of_the_renamed_tables():
    out = rewrite(MYSQL8_DUMP, [0], renames=RENAMES)
    lines = out.split(b"\n")
    assert b"DROP TABLE IF EXISTS `wfu_stage_wp_5_posts`;" in lines
    assert b"CREATE TABLE `wfu_stage_wp_5_posts` (" in lines
    assert b"LOCK TABLES `wfu_stage_wp_5_posts` WRITE;" in lines
    assert b"/*!40000 ALTER TABLE `wfu_stage_wp_5_posts` DISABLE KEYS */;" in lines
    assert b"/*!40000 ALTER TABLE `wfu_stage_wp_5_posts` ENABLE KEYS */;" in lines
    assert b"INSERT INTO `wfu_stage_wp_5_postmeta` VALUES (1),(2);" in lines
    # Row data, and a table whose name merely starts like a renamed one, are left alone.
    assert b"\\nINSERT INTO `wp_5_posts` VALUES','Hi'" in out and b"\xf0\x9f\x98\x80 CREATE TABLE `wp_5_posts` (" in out
    assert b"CREATE TABLE `wp_5_posts_extra` (" in lines and b"INSERT INTO `wp_5_posts_extra` VALUES (1);" in lines
    # Nothing else changed: undoing the renames gives the original back.
    restored = out
    for old, new in RENAMES.items():
        restored = restored.replace(b"`" + new.encode() + b"`", b"`" + old.encode() + b"`")
    assert restored == MYSQL8_DUMP
    assert not any(line.startswith((b"INSERT INTO `wp_5_posts` ", b"CREATE TABLE `wp_5_posts` (")) for line in lines)


def test_mysql8_collations_are_replaced_in_table_definitions_only():
    out = rewrite(MYSQL8_DUMP, [0], collations=COLLATIONS)
    lines = out.split(b"\n")
    assert b"  `post_content` longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci NOT NULL," in lines
    assert b"  `post_name` varchar(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL DEFAULT ''," in lines
    assert b") ENGINE=InnoDB AUTO_INCREMENT=3 DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_520_ci;" in lines
    assert b"  `post_title` text COLLATE utf8mb4_unicode_520_ci NOT NULL," in lines
    # The post that quotes the collation keeps it.
    assert b"(1,'Use COLLATE=utf8mb4_0900_ai_ci\\nINSERT" in out
    assert out.count(b"utf8mb4_0900") == 1


def test_first_line_of_the_stream_is_rewritten_too():
    data = b"CREATE TABLE `wp_5_posts` (\n  `a` int COLLATE utf8mb4_0900_ai_ci\n) ENGINE=InnoDB;\n"
    out = rewrite(data, [0], renames=RENAMES, collations=COLLATIONS)
    assert out == (b"CREATE TABLE `wfu_stage_wp_5_posts` (\n  `a` int COLLATE utf8mb4_unicode_520_ci\n"
                   b") ENGINE=InnoDB;\n")


def test_a_rewriter_with_nothing_to_do_is_inactive():
    assert not DumpRewriter(renames={"a": "a"}, collations={}).active
    assert DumpRewriter(renames={"a": "b"}).active


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(MYSQL8_DUMP) - 1), unique=True, max_size=40))
def test_chunk_boundaries_do_not_change_the_result(cuts):
    whole = rewrite(MYSQL8_DUMP, [0], renames=RENAMES, collations=COLLATIONS)
    assert rewrite(MYSQL8_DUMP, [0] + sorted(cuts), renames=RENAMES, collations=COLLATIONS) == whole


def test_long_lines_are_not_held_back(monkeypatch):
    monkeypatch.setattr(DumpRewriter, "LOOKBACK", 16)
    rewriter = DumpRewriter(renames=RENAMES)
    row = b"(1,'" + b"x" * 1000 + b"'),"
    first = rewriter.feed(b"INSERT INTO `wp_5_posts` VALUES\n" + row)
    # Everything but a bounded tail is passed on at once, however long the line.
    assert first.startswith(b"INSERT INTO `wfu_stage_wp_5_posts` VALUES\n(1,'xxx") and len(first) >= len(row)
    rest = rewriter.feed(b"\nINSERT INTO `wp_5_posts` VALUES\n(2);\n") + rewriter.finish()
    assert rest.endswith(b"INSERT INTO `wfu_stage_wp_5_posts` VALUES\n(2);\n")


def test_rewrite_collations_on_a_show_create_table_statement():
    create = (b"CREATE TABLE `t` (\n  `a` varchar(10) COLLATE utf8mb4_0900_ai_ci DEFAULT NULL\n"
              b") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_0900_ai_ci")
    assert rewrite_collations(create, COLLATIONS) == create.replace(b"utf8mb4_0900_ai_ci", b"utf8mb4_unicode_520_ci")


def test_destination_names_validate_and_refuse_clashes():
    assert destination_names(["wp_5_posts", "wp_5_options"], {"wp_5_posts": "s_posts"}) == {
        "wp_5_posts": "s_posts", "wp_5_options": "wp_5_options"}
    with pytest.raises(ConfigError, match="several tables would be copied to s"):
        destination_names(["a", "b"], {"a": "s", "b": "s"})
    with pytest.raises(ConfigError, match="not being copied: c"):
        destination_names(["a"], {"c": "d"})
    with pytest.raises(ConfigError, match="invalid table name"):
        destination_names(["wp_posts`; DROP TABLE x; --"])


def test_option_file_comes_first_and_mysql_dump_gets_its_own_flags(tmp_path):
    fake = tmp_path / "mysqldump"
    fake.write_text("#!/bin/sh\necho 'mysqldump  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    options_a, options_b = ("--defaults-extra-file=/dev/fd/7", 7), ("--defaults-extra-file=/dev/fd/8", 8)
    mysql = dump_command(str(fake), options_a, "wp", ["wp_5_posts"])
    assert mysql.argv[1] == "--defaults-extra-file=/dev/fd/7" and mysql.fds == (7,)
    assert "--set-gtid-purged=OFF" in mysql.argv and "--column-statistics=0" in mysql.argv
    assert mysql.argv[-2:] == ["wp", "wp_5_posts"]
    tools = copy_engine.client_tools()
    if tools is None:
        pytest.skip("no MariaDB client tools installed")
    assert not is_mysql_tool(tools[0])
    mariadb = dump_command(tools[0], options_a, "wp", ["wp_5_posts"])
    assert mariadb.argv[1] == "--defaults-extra-file=/dev/fd/7" and "--set-gtid-purged=OFF" not in mariadb.argv
    load = load_command(tools[1], options_b, "wp_migration")
    assert load.argv[1] == "--defaults-extra-file=/dev/fd/8" and "--skip-print-query-on-error" in load.argv
    assert load.fds == (8,) and os.path.basename(load.argv[0]) in ("mariadb", "mysql")
