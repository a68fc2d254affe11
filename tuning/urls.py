"""/weights/ (the htmx page and its regions) and /api/v1/weights/ (the same for admin tokens)."""

from django.urls import path

from tuning import views

urlpatterns = [
    path("weights/", views.weights_page, name="weights"),
    path("weights/what-if/", views.weights_what_if, name="weights-what-if"),
    path("weights/fit/", views.weights_fit, name="weights-fit"),
    path("weights/save/", views.weights_save, name="weights-save"),
    path("weights/<int:pk>/activate/", views.weights_activate, name="weights-activate"),
    path("weights/jobs/<int:pk>/", views.weights_job, name="weights-job"),
    path("api/v1/weights/", views.WeightProfileListApi.as_view(), name="api-weights"),
    path("api/v1/weights/what-if/", views.WhatIfApi.as_view(), name="api-weights-what-if"),
    path("api/v1/weights/fit/", views.WeightFitApi.as_view(), name="api-weights-fit"),
    path("api/v1/weights/audit/", views.WeightAuditApi.as_view(), name="api-weights-audit"),
    path("api/v1/weights/jobs/<int:pk>/", views.ReaggregationJobApi.as_view(), name="api-weights-job"),
    path("api/v1/weights/<int:pk>/", views.WeightProfileDetailApi.as_view(), name="api-weights-detail"),
    path("api/v1/weights/<int:pk>/activate/", views.WeightProfileActivateApi.as_view(), name="api-weights-activate"),
]
