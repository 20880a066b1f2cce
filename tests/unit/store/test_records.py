"""Each record is built positionally from its table's row: its fields are the table's columns,
in the same order."""

from dataclasses import fields

import pytest

from conveyor.store import records, schema

TABLES = [
    (records.WorkspaceRecord, schema.workspaces),
    (records.ApiKeyRecord, schema.api_keys),
    (records.FieldRecord, schema.field_definitions),
    (records.ListRecord, schema.lists),
    (records.ContactRecord, schema.contacts),
    (records.SegmentRecord, schema.segments),
    (records.TemplateRecord, schema.templates),
    (records.TemplateVersionRecord, schema.template_versions),
    (records.MessageRecord, schema.outbox),
    (records.SuppressionRecord, schema.suppressions),
    (records.MemberRecord, schema.members),
    (records.PipelineRecord, schema.pipelines),
    (records.FieldRecord, schema.deal_fields),
    (records.DealRecord, schema.deals),
    (records.NoteRecord, schema.notes),
    (records.TaskRecord, schema.tasks),
    (records.ScoringModelRecord, schema.scoring_models),
    (records.ContactScoreRecord, schema.contact_scores),
    (records.ScoreAwardRecord, schema.score_awards),
    (records.EventRecord, schema.events),
    (records.WebSessionRecord, schema.web_sessions),
    (records.ReportMessageRecord, schema.report_messages),
]


@pytest.mark.parametrize(("record", "table"), TABLES, ids=[t.name for _, t in TABLES])
def test_fields_are_the_columns_in_order(record, table):
    assert [f.name for f in fields(record)] == [c.name for c in table.columns]


def test_a_current_template_is_the_template_then_its_content():
    names = [f.name for f in fields(records.CurrentTemplate)]
    assert names == [c.name for c in schema.templates.columns] + ["content"]


def test_a_record_is_frozen():
    row = (1, "acme", "s3cret", {}, None, 0)
    workspace = records.WorkspaceRecord.from_row(row)
    assert workspace.name == "acme"
    with pytest.raises(AttributeError):
        workspace.name = "other"  # type: ignore[misc]
