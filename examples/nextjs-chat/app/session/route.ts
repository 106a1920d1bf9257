import { NextResponse, type NextRequest } from "next/server";

import { USER_COOKIE, USER_PATTERN } from "../../lib/config";

/**
 * A redirect to a path of this site. Relative, so the browser stays on
 * the host it used, whatever name the server knows itself by.
 */
function seeOther(path: string): NextResponse {
  return new NextResponse(null, { status: 303, headers: { location: path } });
}

/** Signs in with a chosen name (a form post), or out with `?out`. */
export async function POST(request: NextRequest) {
  if (request.nextUrl.searchParams.has("out")) {
    const response = seeOther("/");
    response.cookies.delete(USER_COOKIE);
    return response;
  }
  // A body that is not a form (JSON, or none) has no name: sent back to
  // the sign-in page with the name error, like an empty name.
  const form = await request.formData().catch(() => undefined);
  const name = String(form?.get("name") ?? "").trim();
  if (!USER_PATTERN.test(name)) return seeOther("/?error=name");
  const response = seeOther("/");
  response.cookies.set(USER_COOKIE, name, {
    httpOnly: true,
    sameSite: "lax",
    path: "/",
    maxAge: 7 * 24 * 3600,
  });
  return response;
}
