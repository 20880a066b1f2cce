"""The composition root: builds the store, clock and services from settings. Nothing connects
at import time; the API, CLI and (later) worker all start from `bootstrap()`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.clock import Clock, SystemClock
from conveyor.services.automation_drafts import AutomationDrafts
from conveyor.services.automation_views import AutomationViews
from conveyor.services.automations import Automations
from conveyor.services.bulk import BulkJobs
from conveyor.services.campaigns import Campaigns
from conveyor.services.catalog import CatalogService
from conveyor.services.channel_config import Channels
from conveyor.services.contact_views import ContactViews
from conveyor.services.contacts import Contacts
from conveyor.services.crm import Crm
from conveyor.services.crm.tasks import Tasks
from conveyor.services.deliverability import Deliverability
from conveyor.services.delivery import Delivery, Providers
from conveyor.services.engine import Engine
from conveyor.services.experiments import Experiments
from conveyor.services.imports import Imports
from conveyor.services.ingest import Ingest
from conveyor.services.live_edits import LiveEdits
from conveyor.services.ops import Operations
from conveyor.services.policies import SendPolicies
from conveyor.services.reactions import Reactions
from conveyor.services.reports import Reports
from conveyor.services.scoring import Scoring
from conveyor.services.segments import Segments
from conveyor.services.signin import SignIn
from conveyor.services.simulate import Simulator
from conveyor.services.template_editor import TemplateEditor
from conveyor.services.templates import Templates
from conveyor.services.workspace_code import WorkspaceCode
from conveyor.services.workspaces import Workspaces
from conveyor.settings import Settings
from conveyor.store import migrate
from conveyor.store.store import Store


@dataclass
class Conveyor:
    settings: Settings
    clock: Clock
    store: Store
    workspaces: Workspaces
    contacts: Contacts
    catalog: CatalogService
    ingest: Ingest
    imports: Imports
    segments: Segments
    automations: Automations
    engine: Engine
    templates: Templates
    delivery: Delivery
    reactions: Reactions
    channels: Channels
    policies: SendPolicies
    crm: Crm
    tasks: Tasks
    scoring: Scoring
    reports: Reports
    ops: Operations
    simulator: Simulator
    code: WorkspaceCode
    campaigns: Campaigns
    bulk_jobs: BulkJobs
    experiments: Experiments
    deliverability: Deliverability
    signin: SignIn
    automation_views: AutomationViews
    contact_views: ContactViews
    live_edits: LiveEdits
    automation_drafts: AutomationDrafts
    template_editor: TemplateEditor

    def upgrade_schema(self) -> None:
        migrate.upgrade(self.store.db.engine)

    def close(self) -> None:
        self.ingest.close()
        self.delivery.close()
        self.store.close()


def bootstrap(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    providers: dict[str, Any] | None = None,
) -> Conveyor:
    """`providers` replaces the channel providers the settings would make, by channel
    ("email", "sms", "webhook"): for tests with their own peers, or an embedding app."""
    settings = settings or Settings()
    clock = clock or SystemClock()
    store = store or Store(settings.resolved_database_url())
    catalog = CatalogService(store, clock)
    contacts = Contacts(store, clock)
    segments = Segments(store, clock, contacts)
    workspaces = Workspaces(store, clock, key_ttl=settings.key_cache_seconds)
    deliverability = Deliverability(store, clock)
    policies = SendPolicies(store, clock, workspaces, deliverability)
    crm = Crm(store, clock)
    tasks = Tasks(store, clock)
    scoring = Scoring(store, clock, batch=settings.engine_batch)
    automations = Automations(store, clock)
    reports = Reports(store, clock)
    engine = Engine(
        store,
        clock,
        segments,
        batch=settings.engine_batch,
        sweeps=(tasks.sweep_overdue,),
        scoring=scoring,
        reports=reports,
    )
    automations = Automations(store, clock)
    templates = Templates(store, clock, max_bytes=settings.max_template_bytes)
    campaigns = Campaigns(store, clock)
    code = WorkspaceCode(
        store,
        clock,
        workspaces=workspaces,
        catalog=catalog,
        templates=templates,
        segments=segments,
        automations=automations,
        policies=policies,
        crm=crm,
        scoring=scoring,
        campaigns=campaigns,
    )
    return Conveyor(
        settings=settings,
        clock=clock,
        store=store,
        workspaces=workspaces,
        contacts=contacts,
        catalog=catalog,
        ingest=Ingest(
            store, clock, max_depth=settings.max_json_depth, group_calls=settings.ingest_group_calls
        ),
        imports=Imports(store, clock, catalog),
        segments=segments,
        automations=automations,
        engine=engine,
        templates=templates,
        delivery=Delivery(
            store, clock, settings, contacts, policies, Providers(settings, providers, store)
        ),
        reactions=Reactions(store, clock),
        channels=Channels(store, clock, settings, workspaces),
        policies=policies,
        crm=crm,
        tasks=tasks,
        scoring=scoring,
        reports=reports,
        ops=Operations(store, clock, settings, consumers=engine.log.names),
        simulator=Simulator(store, clock, segments),
        code=code,
        campaigns=campaigns,
        bulk_jobs=BulkJobs(store, clock, engine),
        experiments=Experiments(store, clock),
        deliverability=deliverability,
        signin=SignIn(store, clock, crm),
        automation_views=AutomationViews(store, clock, automations),
        contact_views=ContactViews(store, clock, contacts),
        live_edits=LiveEdits(store, clock, automations),
        automation_drafts=AutomationDrafts(store, clock, automations, code),
        template_editor=TemplateEditor(
            store, clock, settings, contacts, providers, max_bytes=settings.max_template_bytes
        ),
    )
