"""/exports/ (the htmx page and its regions) and /api/v1/exports/ (the same for admin tokens)."""

from django.urls import path

from exports import views

urlpatterns = [
    path("exports/", views.exports_page, name="exports"),
    path("exports/start/", views.exports_start, name="exports-start"),
    path("exports/jobs/<int:pk>/", views.exports_job, name="exports-job"),
    path("exports/jobs/<int:pk>/download/", views.exports_download, name="exports-download"),
    path("exports/jobs/<int:pk>/manifest/", views.exports_download, {"what": "manifest"}, name="exports-manifest"),
    path("api/v1/exports/", views.ExportListApi.as_view(), name="api-exports"),
    path("api/v1/exports/critic-runs/", views.CriticRunListApi.as_view(), name="api-exports-critic-runs"),
    path("api/v1/exports/<int:pk>/", views.ExportDetailApi.as_view(), name="api-exports-detail"),
    path("api/v1/exports/<int:pk>/download/", views.ExportDownloadApi.as_view(), name="api-exports-download"),
    path("api/v1/exports/<int:pk>/manifest/", views.ExportManifestApi.as_view(), name="api-exports-manifest"),
    path("api/v1/exports/<int:pk>/parquet/", views.ExportParquetApi.as_view(), name="api-exports-parquet"),
    path("exports/jobs/<int:pk>/parquet/", views.exports_download, {"what": "parquet"}, name="exports-parquet"),
]
