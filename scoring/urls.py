from django.urls import path

from scoring import apis, rewards_async

urlpatterns = [
    path("tasks/", apis.TaskListCreateApi.as_view(), name="api-tasks"),
    path("tasks/<slug:name>/", apis.TaskDetailApi.as_view(), name="api-task"),
    path("patches/", apis.PatchListCreateApi.as_view(), name="api-patches"),
    path("patches/<int:pk>/", apis.PatchDetailApi.as_view(), name="api-patch"),
    path("rewards/", rewards_async.RewardsWaitApi.as_view(), name="api-rewards"),  # waits holding no thread
]
