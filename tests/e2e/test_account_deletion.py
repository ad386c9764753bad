"""A deleted account's mirror address, refused by the real edge after its gate sync; served
again after an undo; refused for good once the account is erased (issue 19)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from accelerator.models import RetiredLabel, Tenant
from selfservice.deletion import account_delete, account_undo_delete
from selfservice.emails import undo_token
from selfservice.erasure import accounts_purge_due
from tests.e2e import harness

pytestmark = [pytest.mark.e2e, pytest.mark.django_db]


def refused_as_unknown(resp: harness.Response) -> bool:
    return resp.status == 404 and json.loads(resp.body)["errors"][0]["code"] == "NAME_UNKNOWN"


def test_the_edge_refuses_a_deleted_accounts_label_after_a_sync(
    edge, upstream, make_tenant, edge_sync
):
    tenant = make_tenant()
    label = tenant.label
    small = upstream.images["small"]
    path = f"/v2/{small.repo}/manifests/{small.tag}"
    accept = [("Accept", harness.MT_MANIFEST), ("Accept", harness.MT_LIST)]
    assert edge.get(label, path, headers=accept).status == 200

    deletion = account_delete(user=tenant.user)
    edge_sync()
    assert refused_as_unknown(edge.get(label, "/v2/"))
    assert refused_as_unknown(edge.get(label, path, headers=accept))

    # The undo link restores the same address at the next sync.
    account_undo_delete(token=undo_token(deletion=deletion))
    edge_sync()
    assert edge.get(label, path, headers=accept).status == 200

    # Deleted again and erased after the grace period: the label is retired for good.
    deletion = account_delete(user=tenant.user)
    assert accounts_purge_due(now=deletion.purge_after + timedelta(seconds=1)) == 1
    edge_sync()
    assert RetiredLabel.objects.filter(label=label, tenant=tenant).exists()
    assert refused_as_unknown(edge.get(label, "/v2/"))
    fresh = Tenant.objects.get(pk=tenant.pk).label
    assert fresh != label and refused_as_unknown(edge.get(fresh, "/v2/"))
