from django.http import JsonResponse


def not_found(request, *args, **kwargs) -> JsonResponse:
    """Unknown paths under /api/ answer JSON, like every other API error."""
    return JsonResponse({"detail": "Not found."}, status=404)
