from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from scoring import health

urlpatterns = [
    path("", RedirectView.as_view(url="/review/", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("scoring.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: the Content-Security-Policy allows no inline one.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", health.metrics, name="metrics"),
    path("", include("labeling.urls")),  # /review/, /dashboard/
    path("", include("tuning.urls")),  # /weights/ and /api/v1/weights/
    path("", include("exports.urls")),  # /exports/ and /api/v1/exports/
]

handler404 = "reviewapp.errors.page_not_found"
handler500 = "reviewapp.errors.server_error"
