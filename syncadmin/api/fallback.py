from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt  # it changes nothing; a CSRF page instead of JSON would break API clients
def not_found(request, *args, **kwargs) -> JsonResponse:
    """Unknown paths under /api/ answer JSON, like every other API error."""
    return JsonResponse({"detail": "Not found."}, status=404)
