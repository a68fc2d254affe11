from django.urls import path

from labeling import views

app_name = "labeling"

urlpatterns = [
    path("review/", views.queue, name="queue"),
    path("review/next/", views.review_next, name="next"),
    path("review/<int:patch_id>/", views.item, name="item"),
    path("review/<int:patch_id>/claim/", views.item_claim, name="claim"),
    path("review/<int:patch_id>/lease/", views.item_lease, name="lease"),
    path("review/<int:patch_id>/submit/", views.item_submit, name="submit"),
    path("review/<int:patch_id>/skip/", views.item_skip, name="skip"),
    path("review/<int:patch_id>/broken/", views.item_broken, name="broken"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/data/<slug:name>.json", views.dashboard_data, name="dashboard-data"),
]
