"""Every broken connector, the check that must catch it, a phrase its failure message must contain, the class of bug
it belongs to, and the double it runs against (a ``crmsync.testing.PagedJsonApi`` unless a time style is needed)."""

from __future__ import annotations

from dataclasses import dataclass

from crmsync import ConnectorSpec

from . import connectors as c
from . import variants as v
from . import variants_cursors as vc

PULL_ALL = "test_full_pull_returns_each_seeded_record_once"
CANONICAL = "test_pulled_records_are_valid_canonical_records"
RESUME = "test_resuming_from_any_batch_cursor_loses_nothing"
CLUSTER = "test_records_changed_at_one_instant_across_pages_are_pulled_once"
MALFORMED = "test_a_malformed_source_record_becomes_a_rejection"
SECRETS = "test_secrets_stay_out_of_reprs_logs_and_errors"
AUTH = "test_refused_credentials_are_an_auth_error"
CLIENT_ERRORS = "test_client_errors_are_not_retried"
REJECTIONS = "test_per_record_rejections_are_reported_without_failing_the_batch"
ANSWER_GAPS = "test_records_missing_from_a_write_answer_are_not_reported_written"
WHOLE_BATCH = "test_a_full_push_batch_is_written_whole"
INPUT = "test_push_leaves_its_input_unchanged"
LATE = "test_a_change_committed_late_is_pulled_once"
LEFT_OUT = "test_values_the_source_leaves_out_stay_empty"
CURSOR_COST = "test_cursors_for_a_large_cluster_grow_linearly"

ISSUE_CLASSES = (
    "paging ties across pages",
    "write answer omits records",
    "batch cut short",
    "bad row dropped",
    "refused credentials read as data",
    "push retried on 4xx",
    "time zones",
    "token logged",
    "input changed by push",
    "currency ignored",
    "change committed late",
    "value invented for one left out",
    "cursor written with every page",
)
"""The classes of bug third-party authors were seen to make that the kit must catch, each with several variants."""


@dataclass(frozen=True)
class Case:
    spec: ConnectorSpec
    check: str
    phrase: str
    bug: str = "other"
    double: str = "PagedJsonApi()"


def case(connector: type, check: str, phrase: str, bug: str = "other", double: str = "PagedJsonApi()", **kw) -> Case:
    return Case(c.broken_spec(connector, **kw), check, phrase, bug, double)


UTC_Z = "PagedJsonApi(time_style='utc')"
NAIVE = "PagedJsonApi(time_style='naive')"

CASES: dict[str, Case] = {
    # paging, cursors, deletions
    "drops_last_page": case(c.DropsLastPage, PULL_ALL, "never pulled"),
    "rereads_first_page": case(c.RereadsFirstPage, PULL_ALL, "did not end"),
    "duplicates_across_pages": case(c.DuplicatesAcrossPages, PULL_ALL, "more than once"),
    "cursor_before_store": case(c.CursorBeforeStore, RESUME, "runs ahead of its records"),
    "loses_records_on_resume": case(c.LosesRecordsOnResume, RESUME, "runs ahead of its records"),
    "cursor_in_memory": case(
        c.CursorInMemory, "test_cursor_survives_a_restart_and_only_moves_forward", "not in the connector's memory"
    ),
    "ignores_deletions": case(c.IgnoresDeletions, "test_deletions_are_reported", "did not report them"),
    "requeries_inclusive": case(v.RequeriesFromLastTimeInclusive, CLUSTER, "did not end", "paging ties across pages"),
    "requeries_exclusive": case(v.RequeriesFromLastTimeExclusive, CLUSTER, "never pulled", "paging ties across pages"),
    "requeries_until_nothing_new": case(
        v.RequeriesAndStopsOnNothingNew, CLUSTER, "never pulled", "paging ties across pages"
    ),
    # canonical values
    "naive_datetimes": case(c.NaiveDatetimes, CANONICAL, "naive datetime"),
    "drops_offset": case(c.DropsOffset, CANONICAL, "the source holds"),
    "float_money": case(c.FloatMoney, CANONICAL, "money must be Decimal"),
    "zulu_parsed_naive": case(v.ZuluParsedNaive, CANONICAL, "the source holds", "time zones", UTC_Z),
    "zulu_stripped": case(v.ZuluStripped, CANONICAL, "the source holds", "time zones", UTC_Z),
    "naive_read_as_utc": case(v.NaiveReadAsUtc, CANONICAL, "the source holds", "time zones", NAIVE),
    "zone_written_in": case(v.ZoneWrittenIn, CANONICAL, "context.timezone='UTC'", "time zones", NAIVE),
    "base_currency_for_every_order": case(v.BaseCurrencyForEveryOrder, CANONICAL, "currency is", "currency ignored"),
    "currency_from_the_wrong_key": case(v.CurrencyFromTheWrongKey, CANONICAL, "currency is", "currency ignored"),
    # unreadable rows
    "skips_unreadable_rows": case(v.SkipsUnreadableRows, MALFORMED, "dropped silently", "bad row dropped"),
    "logs_and_drops_unreadable_rows": case(
        v.LogsAndDropsUnreadableRows, MALFORMED, "dropped silently", "bad row dropped"
    ),
    "decimal_error_escapes": case(v.DecimalErrorEscapes, MALFORMED, "made the pull raise", "bad row dropped"),
    "unreadable_time_escapes": case(v.UnreadableTimeEscapes, MALFORMED, "made the pull raise", "bad row dropped"),
    # HTTP errors
    "swallows_429": case(c.Swallows429, "test_transient_errors_are_retried", "was not retried"),
    "retries_400": case(c.Retries400, CLIENT_ERRORS, "was retried"),
    "retries_push_on_any_error": case(v.RetriesPushOnAnyError, CLIENT_ERRORS, "was retried", "push retried on 4xx"),
    "retries_error_answers_of_writes": case(
        v.RetriesErrorAnswersOfWrites, CLIENT_ERRORS, "was retried", "push retried on 4xx"
    ),
    "auth_errors_as_empty_answers": case(
        v.AuthErrorsAsEmptyAnswers, AUTH, "returned without an error", "refused credentials read as data"
    ),
    "auth_errors_as_fatal": case(
        v.AuthErrorsAsFatal, AUTH, "raise crmsync.AuthError", "refused credentials read as data"
    ),
    "push_failures_as_record_failures": case(
        v.PushFailuresAsRecordFailures, AUTH, "returned without an error", "refused credentials read as data"
    ),
    "lenient_check": case(v.LenientCheck, AUTH, "returned without an error", "refused credentials read as data"),
    # secrets and settings
    "leaks_token_in_repr": case(c.LeaksToken, SECRETS, "appears in"),
    "logs_token_at_start": case(v.LogsTokenAtStart, SECRETS, "log record from crmsync.connector", "token logged"),
    "logs_headers_at_start": case(v.LogsHeadersAtStart, SECRETS, "log record from crmsync_acme.http", "token logged"),
    "token_in_error_messages": case(v.TokenInErrorMessages, SECRETS, "raised on HTTP 400", "token logged"),
    "plain_str_token": case(
        c.PlainToken, "test_secret_settings_are_secretstr", "not SecretStr", settings=c.PlainTokenSettings
    ),
    "accepts_unknown_keys": case(
        c.ReferenceConnector, "test_settings_reject_unknown_keys", "silently", settings=c.LooseSettings
    ),
    # pushes
    "per_record_errors_as_success": case(c.PerRecordErrorsAsSuccess, REJECTIONS, "reported ok=True"),
    "fails_batch_on_one_rejection": case(c.FailsBatchOnOneRejection, REJECTIONS, "made push() raise"),
    "pushes_unchanged_records": case(c.PushesUnchanged, "test_rerun_pushes_only_what_changed", "no buffer"),
    "pushes_empty_batch": case(c.PushesEmptyBatch, "test_push_of_no_changes_makes_no_call", "without calling"),
    "check_ignores_missing_fields": case(
        c.CheckIgnoresFields, "test_check_reports_missing_fields", "is missing in the system"
    ),
    "answer_gaps_read_as_success": case(
        v.AnswerGapsReadAsSuccess, ANSWER_GAPS, "said nothing of member", "write answer omits records"
    ),
    "zips_answers_by_position": case(
        v.ZipsAnswersByPosition, ANSWER_GAPS, "said nothing of member", "write answer omits records"
    ),
    "truncates_to_the_api_limit": case(v.TruncatesToTheApiLimit, WHOLE_BATCH, "cut short", "batch cut short"),
    "drops_the_last_partial_chunk": case(v.DropsTheLastPartialChunk, WHOLE_BATCH, "cut short", "batch cut short"),
    "batch_larger_than_the_api_accepts": case(
        v.BatchLargerThanTheApiAccepts, WHOLE_BATCH, "(push_batch_size) raised FatalAPIError", "batch cut short"
    ),
    "converts_values_in_place": case(
        v.ConvertsValuesInPlace, INPUT, "changed the changes it was given", "input changed by push"
    ),
    "consumes_the_change_list": case(
        v.ConsumesTheChangeList, INPUT, "changed the changes it was given", "input changed by push"
    ),
    "adds_a_marker_tag": case(v.AddsAMarkerTag, INPUT, "changed the changes it was given", "input changed by push"),
    "none_written_as_text": case(v.NoneWrittenAsText, "test_cleared_grades_clear_the_fields", "never the text"),
    "unknown_status_as_paid": case(v.UnknownStatusAsPaid, CANONICAL, "status is"),
    "missing_date_becomes_now": case(v.MissingDateBecomesNow, MALFORMED, "a value invented for a missing one"),
    # late commits, values left out, cursor cost
    "no_overlap_window": case(vc.NoOverlapWindow, LATE, "re-read an overlap window", "change committed late"),
    "overlap_in_milliseconds": case(
        vc.OverlapInMilliseconds, LATE, "re-read an overlap window", "change committed late"
    ),
    "deletions_move_the_watermark": case(
        vc.DeletionsMoveTheWatermark, LATE, "re-read an overlap window", "change committed late"
    ),
    "drops_what_is_not_newer_than_the_watermark": case(
        vc.DropsWhatIsNotNewerThanTheWatermark, LATE, "re-read an overlap window", "change committed late"
    ),
    "missing_creation_date_becomes_now": case(
        vc.MissingCreationDateBecomesNow, LEFT_OUT, "created_at is", "value invented for one left out"
    ),
    "order_without_currency_in_dollars": case(
        vc.OrderWithoutCurrencyInDollars, LEFT_OUT, "currency is 'USD'", "value invented for one left out"
    ),
    "contact_id_through_str": case(
        vc.ContactIdThroughStr, LEFT_OUT, "member_external_id is 'None'", "value invented for one left out"
    ),
    "missing_names_as_empty_text": case(
        vc.MissingNamesAsEmptyText, LEFT_OUT, "first_name is ''", "value invented for one left out"
    ),
    "cursor_with_every_page": case(
        vc.CursorWithEveryPage, CURSOR_COST, "quadratic time", "cursor written with every page"
    ),
    "cursor_every_ten_pages": case(
        vc.CursorEveryTenPages, CURSOR_COST, "quadratic time", "cursor written with every page"
    ),
    "page_size_beyond_the_api": case(
        v.PageSizeBeyondTheApi,
        "test_settings_at_the_top_of_their_range_work",
        "the largest values the settings model allows",
        settings=v.LooserPageSettings,
    ),
}
