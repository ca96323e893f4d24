"""The content policy's settings: run options normalized, preserve lists checked, conditions built per table."""

import pytest

from ansible_collections.wfu.multisite.plugins.module_utils import content_policy
from ansible_collections.wfu.multisite.plugins.module_utils.db import ConfigError
from ansible_collections.wfu.multisite.plugins.module_utils.pipeline import Endpoint
from ansible_collections.wfu.multisite.plugins.module_utils.replace_rules import Environment
from ansible_collections.wfu.multisite.plugins.module_utils.run_options import (
    check_run, effective_options, normalize_options)

DB = {"host": "127.0.0.1", "port": 3307, "user": "wp", "password": "pw", "database": "dev_wp"}
MIGRATION_DB = dict(DB, port=3309, database="wp_migration")


def environments(**uat):
    return {"dev": {"url": "https://dev.example.edu", "db": dict(DB)},
            "uat": dict({"url": "https://uat.example.edu", "db": dict(DB, port=3308, database="uat_wp")}, **uat)}


def test_content_options_from_extra_vars_are_normalized():
    options = normalize_options({"exclude_transients": "yes", "exclude_spam_comments": "off",
                                 "exclude_revisions": True, "exclude_post_types": "tribe_events, event,event,"})
    assert options == {"exclude_transients": True, "exclude_spam_comments": False, "exclude_revisions": True,
                       "exclude_post_types": ["event", "tribe_events"]}
    assert normalize_options({"exclude_post_types": ["wp-block", " event "]}) == \
        {"exclude_post_types": ["event", "wp-block"]}


def test_content_options_default_to_copying_everything():
    options = effective_options()
    assert options["exclude_transients"] is False and options["exclude_spam_comments"] is False
    assert options["exclude_revisions"] is False and options["exclude_post_types"] == []
    # Each run gets its own list: a default is never shared.
    options["exclude_post_types"].append("event")
    assert effective_options()["exclude_post_types"] == []


@pytest.mark.parametrize("given, words", [
    ({"exclude_post_types": "Event"}, "'Event' is not a post type name"),
    ({"exclude_post_types": ["event", "x' OR 1=1 -- "]}, "is not a post type name"),
    ({"exclude_post_types": "a_post_type_name_too_long"}, "at most 20"),
    ({"exclude_post_types": 5}, "exclude_post_types must list post type names"),
    ({"exclude_post_types": [["event"]]}, "is not a post type name"),
    ({"exclude_revisions": "maybe"}, "exclude_revisions must be true or false"),
])
def test_bad_content_options_are_refused_by_name(given, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace("'", "'")):
        normalize_options(given)


@pytest.mark.parametrize("key", ["preserve_options", "preserve_sitemeta"])
@pytest.mark.parametrize("value", ["blog_public", ["blog_public", ""], ["  "], [3], {"blog_public": 1}, [None]])
def test_preserve_lists_must_be_lists_of_names(key, value):
    with pytest.raises(ConfigError, match=r"wfu_environments\.uat\.%s must be a list of option names" % key):
        check_run(environments(**{key: value}), MIGRATION_DB, "dev", "uat")


def test_good_preserve_lists_pass_and_reach_the_endpoint():
    uat = environments(preserve_options=["blog_public", "admin_email", "blog_public"],
                       preserve_sitemeta=["active_sitewide_plugins"])
    assert check_run(uat, MIGRATION_DB, "dev", "uat") == {}
    endpoint = Endpoint(dict(uat["uat"], name="uat"))
    assert endpoint.preserve_options == ("blog_public", "admin_email")
    assert endpoint.preserve_sitemeta == ("active_sitewide_plugins",)
    assert Endpoint(dict(environments()["dev"], name="dev")).preserve_options == ()
    # The addressing settings accept the keys (the module hands the whole environment on).
    assert Environment.from_config("uat", uat["uat"]).host == "uat.example.edu"


def test_the_module_side_names_the_environment():
    with pytest.raises(ConfigError, match=r"environment uat\.preserve_sitemeta must be a list"):
        Endpoint(dict(environments()["uat"], name="uat", preserve_sitemeta="active_sitewide_plugins"))


def test_site_conditions_cover_the_parent_and_its_meta_tables():
    site = ["wp_7_%s" % name for name in ("options", "comments", "commentmeta", "posts", "postmeta",
                                          "term_relationships", "terms", "links")]
    everything = {"exclude_transients": True, "exclude_spam_comments": True, "exclude_revisions": True,
                  "exclude_post_types": ["event"]}
    filters = content_policy.site_filters(everything, "dev_wp", "wp_7_", site)
    assert sorted(filters) == sorted(site[:6])
    # Underscores escaped: _transientX and xtransient_ are not transients.
    assert r"LIKE '\_transient\_%'" in filters["wp_7_options"]
    assert r"LIKE '\_site\_transient\_%'" in filters["wp_7_options"]
    assert "`dev_wp`.`wp_7_comments`" in filters["wp_7_commentmeta"]
    assert "IN ('event', 'revision')" in filters["wp_7_postmeta"]
    assert "`dev_wp`.`wp_7_posts`" in filters["wp_7_postmeta"]
    assert all(condition.endswith(" IS NOT TRUE") for condition in filters.values())
    # The main site's tables have no number; the main site's options only get the options filter asked for.
    assert sorted(content_policy.site_filters({"exclude_transients": True}, "dev_wp", "wp_", ["wp_options"])) == \
        ["wp_options"]
    assert content_policy.site_filters({}, "dev_wp", "wp_7_", site) == {}
    # Meta tables are filtered only with their parent: without wp_7_posts nothing refers to it.
    assert content_policy.site_filters({"exclude_revisions": True}, "dev_wp", "wp_7_", ["wp_7_postmeta"]) == {}


def test_network_conditions_leave_out_site_transients_only():
    assert content_policy.network_filters({"exclude_transients": False}, "wp_", ["wp_sitemeta"]) == {}
    filters = content_policy.network_filters({"exclude_transients": True}, "wp_", ["wp_blogs", "wp_sitemeta"])
    assert filters == {"wp_sitemeta": r"(`meta_key` LIKE '\_site\_transient\_%') IS NOT TRUE"}
