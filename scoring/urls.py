from django.urls import path

from scoring import apis, rewards_async
from scoring.task_import_api import TaskImportApi

urlpatterns = [
    path("tasks/", apis.TaskListCreateApi.as_view(), name="api-tasks"),
    path("tasks/import/", TaskImportApi.as_view(), name="api-tasks-import"),  # before tasks/<name>/
    path("tasks/<slug:name>/", apis.TaskDetailApi.as_view(), name="api-task"),
    path("patches/", apis.PatchListCreateApi.as_view(), name="api-patches"),
    path("patches/<int:pk>/", apis.PatchDetailApi.as_view(), name="api-patch"),
    path("rewards/", rewards_async.RewardsWaitApi.as_view(), name="api-rewards"),  # waits holding no thread
]
