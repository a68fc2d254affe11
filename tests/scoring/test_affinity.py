"""Task affinity: a task's patches go to one live exec worker's own queue; a worker gone, they move."""

from __future__ import annotations

import base64
import json

import pytest
from celery.utils import worker_direct

from reviewapp.celery import app
from scoring import affinity, services
from scoring.health import redis_client
from scoring.models import Patch, Task

HOSTS = ["w1@affinity", "w2@affinity"]


@pytest.fixture
def brokers(redis_server):
    """A clean broker with the two workers' own queues declared, as their workers would declare them."""
    client = redis_client()
    client.flushdb()
    with app.connection_for_write() as connection:
        for host in HOSTS:
            worker_direct(host).bind(connection.default_channel).declare()
    affinity._live = (0.0, [])  # this process's cached list of live workers
    yield client
    client.flushdb()
    affinity._live = (0.0, [])


def advertise(client, *hosts: str) -> None:
    for key in client.scan_iter(f"{affinity.ADVERT_KEY}*"):
        client.delete(key)
    for host in hosts:
        client.set(affinity.ADVERT_KEY + host, "1", ex=60)
    affinity._live = (0.0, [])


def queued_patch_ids(client, queue: str) -> list[int]:
    """The patch ids of the run_stage messages waiting in `queue` (kombu's JSON envelope in a Redis list)."""
    ids = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        ids.append(json.loads(body)[0][0])
    return ids


@pytest.fixture
def patches_of_four_tasks(tiny_task, make_user, fix_diff):
    """Three queued patches for each of four tasks (copies of the tiny task): {task id: [patch ids]}."""
    user, _ = make_user("trainer", "client")
    groups = {}
    for i in range(4):
        task = Task.objects.get(pk=tiny_task.pk)
        if i:
            task.pk, task.name = None, f"tiny-{i}"
            task.save()
        groups[task.pk] = [
            Patch.objects.create(task=task, client=user, diff=fix_diff, diff_sha256=f"{i}-{j}".ljust(64, "0")).pk
            for j in range(3)
        ]
    return groups


@pytest.mark.django_db
def test_every_patch_of_a_task_goes_to_the_queue_of_the_worker_that_owns_the_task(
    brokers, patches_of_four_tasks
) -> None:
    advertise(brokers, *HOSTS)

    for ids in patches_of_four_tasks.values():
        for patch_id in ids:
            services.enqueue_stage(patch_id)

    queued = {host: set(queued_patch_ids(brokers, f"{host}.dq2")) for host in HOSTS}
    assert queued_patch_ids(brokers, "exec") == []
    for task_id, ids in patches_of_four_tasks.items():
        owner = affinity.owner(task_id, HOSTS)
        assert set(ids) <= queued[owner]
        assert not set(ids) & queued[next(h for h in HOSTS if h != owner)]


@pytest.mark.django_db
def test_when_a_worker_is_gone_its_tasks_go_to_the_live_one_and_with_none_to_the_shared_queue(
    brokers, patches_of_four_tasks
) -> None:
    every_patch = [patch_id for ids in patches_of_four_tasks.values() for patch_id in ids]
    advertise(brokers, HOSTS[1])
    for patch_id in every_patch:
        services.enqueue_stage(patch_id)
    assert sorted(queued_patch_ids(brokers, f"{HOSTS[1]}.dq2")) == sorted(every_patch)

    advertise(brokers)
    for patch_id in every_patch:
        services.enqueue_stage(patch_id)
    assert sorted(queued_patch_ids(brokers, "exec")) == sorted(every_patch)


def test_tasks_spread_over_workers_and_only_a_leaving_workers_tasks_move() -> None:
    three = ["a@h", "b@h", "c@h"]
    before = {task_id: affinity.owner(task_id, three) for task_id in range(300)}
    after = {task_id: affinity.owner(task_id, three[:2]) for task_id in range(300)}

    assert all(60 <= list(before.values()).count(host) <= 140 for host in three)
    moved = [task_id for task_id in before if before[task_id] != after[task_id]]
    assert moved and all(before[task_id] == "c@h" for task_id in moved)


@pytest.mark.django_db
def test_a_group_larger_than_the_backlog_spills_over_to_the_shared_queue(
    brokers, patches_of_four_tasks, settings
) -> None:
    settings.REVIEWAPP = {**settings.REVIEWAPP, "AFFINITY_BACKLOG": 2}
    advertise(brokers, *HOSTS)
    task_id, ids = next(iter(patches_of_four_tasks.items()))

    for patch_id in ids:
        services.enqueue_stage(patch_id)

    owner = affinity.owner(task_id, HOSTS)
    assert sorted(queued_patch_ids(brokers, f"{owner}.dq2")) == ids[:2]
    assert queued_patch_ids(brokers, "exec") == ids[2:]
