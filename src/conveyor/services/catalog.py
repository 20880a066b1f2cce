"""A workspace's catalog: the custom fields it declares and the lists contacts subscribe to."""

from __future__ import annotations

from typing import Any

from conveyor.clock import Clock
from conveyor.domain.contacts import ListInfo, check_list_key
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.fields import FieldDefinition, FieldType, define_field
from conveyor.domain.workspaces import Workspace
from conveyor.store.records import FieldRecord
from conveyor.store.store import Store, Tx


def _definition(row: FieldRecord) -> FieldDefinition:
    choices = tuple(row.choices) if row.choices is not None else None
    return FieldDefinition(row.key, FieldType(row.type), row.label, choices)


class CatalogService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # --- fields ---------------------------------------------------------------------------

    def fields(self, workspace: Workspace) -> list[FieldDefinition]:
        with self.store.read() as tx:
            return [_definition(row) for row in tx.catalog.fields(workspace.id)]

    def field(self, workspace: Workspace, key: str) -> FieldDefinition:
        for definition in self.fields(workspace):
            if definition.key == key:
                return definition
        raise NotFound(f"no field '{key}' in this workspace")

    def declare_field(
        self,
        workspace: Workspace,
        key: str,
        type_: str,
        label: str | None,
        choices: list[str] | None,
    ) -> FieldDefinition:
        definition = define_field(key, type_, label, choices)

        def work(tx: Tx) -> FieldDefinition:
            if any(row.key == key for row in tx.catalog.fields(workspace.id)):
                raise Conflict(f"field '{key}' exists already", field="key")
            tx.catalog.add_fields(
                workspace.id,
                [
                    {
                        "key": key,
                        "type": str(definition.type),
                        "label": label,
                        "choices": list(definition.choices)
                        if definition.choices is not None
                        else None,
                    }
                ],
                self.clock.now(),
            )
            return definition

        return self.store.transact(work)

    def update_field(
        self, workspace: Workspace, key: str, label: str | None, choices: list[str] | None
    ) -> FieldDefinition:
        """Relabel a field or change its choices; its type is fixed once values exist."""

        def work(tx: Tx) -> FieldDefinition:
            current = next(
                (_definition(r) for r in tx.catalog.fields(workspace.id) if r.key == key), None
            )
            if current is None:
                raise NotFound(f"no field '{key}' in this workspace")
            new = define_field(
                key,
                current.type,
                label if label is not None else current.label,
                choices
                if choices is not None
                else (list(current.choices) if current.choices else None),
            )
            tx.catalog.update_field(
                workspace.id,
                key,
                {
                    "label": new.label,
                    "choices": list(new.choices) if new.choices is not None else None,
                },
            )
            return new

        return self.store.transact(work)

    def delete_field(self, workspace: Workspace, key: str) -> None:
        """Forget the declaration; values already stored on contacts stay until overwritten."""

        def work(tx: Tx) -> None:
            if not tx.catalog.delete_field(workspace.id, key):
                raise NotFound(f"no field '{key}' in this workspace")

        self.store.transact(work)

    # --- lists ----------------------------------------------------------------------------

    def lists(self, workspace: Workspace) -> list[tuple[ListInfo, dict[str, int]]]:
        with self.store.read() as tx:
            counts = tx.catalog.list_counts(workspace.id)
            return [
                (ListInfo(row.id, row.key, row.name, row.double_opt_in), counts.get(row.id, {}))
                for row in tx.catalog.lists(workspace.id)
            ]

    def list(self, workspace: Workspace, key: str) -> tuple[ListInfo, dict[str, int]]:
        for info, counts in self.lists(workspace):
            if info.key == key:
                return info, counts
        raise NotFound(f"no list '{key}' in this workspace")

    def create_list(
        self, workspace: Workspace, key: str, name: str | None = None, double_opt_in: bool = False
    ) -> ListInfo:
        check_list_key(key)
        title = (name or key).strip()
        if not title or len(title) > 255:
            raise InvalidInput("name", "a list name is 1-255 characters")

        def work(tx: Tx) -> ListInfo:
            if any(row.key == key for row in tx.catalog.lists(workspace.id)):
                raise Conflict(f"list '{key}' exists already", field="key")
            list_id = tx.catalog.add_list(workspace.id, key, title, double_opt_in, self.clock.now())
            return ListInfo(list_id, key, title, double_opt_in)

        return self.store.transact(work)

    def ensure_list(self, workspace: Workspace, key: str) -> tuple[ListInfo, bool]:
        """The list with this key, created if missing (for imports); True when created."""
        try:
            return self.list(workspace, key)[0], False
        except NotFound:
            try:
                return self.create_list(workspace, key), True
            except Conflict:
                return self.list(workspace, key)[0], False

    def update_list(
        self, workspace: Workspace, key: str, name: str | None, double_opt_in: bool | None
    ) -> ListInfo:
        values: dict[str, Any] = {}
        if name is not None:
            if not name.strip() or len(name) > 255:
                raise InvalidInput("name", "a list name is 1-255 characters")
            values["name"] = name.strip()
        if double_opt_in is not None:
            values["double_opt_in"] = double_opt_in

        def work(tx: Tx) -> None:
            if values and not tx.catalog.update_list(workspace.id, key, values):
                raise NotFound(f"no list '{key}' in this workspace")

        self.store.transact(work)
        return self.list(workspace, key)[0]

    def delete_list(self, workspace: Workspace, key: str) -> None:
        def work(tx: Tx) -> None:
            if not tx.catalog.delete_list(workspace.id, key):
                raise NotFound(f"no list '{key}' in this workspace")

        self.store.transact(work)
