//! When a cluster's API server last delivered list or watch data: a completed list, a watch
//! event or a bookmark. kube-rs's watcher consumes bookmarks and restarts finished watches
//! without telling its user, so the client itself is wrapped ([`HeartbeatLayer`]): every
//! chunk of a successful watch response beats the cluster's [`Heartbeat`]. The cluster task
//! beats it too for every list it completes and every event it sees. (An `ERROR` event, such
//! as 410 Gone, also arrives in a successful watch response and counts: the server answered.
//! If the re-list it asks for then fails, no list completes and the clock stays.)
//!
//! A shared clock rather than a field of the published status: bookmarks come every minute
//! or so on each watch, and publishing a status for each would rebuild the routing table for
//! nothing. Readers (the status and metrics, every few seconds) read the clock when they look.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame};
use kube::client::{Body, DynBody};
use tower::{BoxError, Layer, Service};

/// The last time a cluster's API server delivered data, in Unix milliseconds (0: never).
/// Clones share the clock.
#[derive(Clone, Default)]
pub struct Heartbeat(Arc<AtomicU64>);

impl Heartbeat {
    /// Records that data arrived now.
    pub fn beat(&self) {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        // A clock stepped back never moves the time backwards.
        self.0.fetch_max(u64::try_from(now.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// When data last arrived; `None` if it never did.
    pub fn last(&self) -> Option<SystemTime> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Heartbeat({:?})", self.last())
    }
}

/// Two statuses are equal when they read the same clock.
impl PartialEq for Heartbeat {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Heartbeat {}

/// Wraps a kube client's service: the body of every successful watch response beats the
/// heartbeat with each chunk it delivers (events and bookmarks alike).
#[derive(Clone)]
pub struct HeartbeatLayer(pub Heartbeat);

impl<S> Layer<S> for HeartbeatLayer {
    type Service = HeartbeatService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeartbeatService { inner, heartbeat: self.0.clone() }
    }
}

pub struct HeartbeatService<S> {
    inner: S,
    heartbeat: Heartbeat,
}

/// True for a watch request (`?watch=true` or `?watch=1`), whose response streams events.
fn is_watch(query: Option<&str>) -> bool {
    query.unwrap_or_default().split('&').any(|pair| pair == "watch=true" || pair == "watch=1")
}

impl<S> Service<Request<Body>> for HeartbeatService<S>
where
    S: Service<Request<Body>, Response = Response<Box<DynBody>>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Box<DynBody>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let heartbeat = is_watch(request.uri().query()).then(|| self.heartbeat.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            match heartbeat {
                Some(heartbeat) if response.status().is_success() => Ok(response.map(|inner| {
                    let body: Box<DynBody> = Box::new(Beating { inner, heartbeat });
                    body
                })),
                _ => Ok(response),
            }
        })
    }
}

/// A response body that beats the heartbeat for every data chunk it yields.
struct Beating {
    inner: Box<DynBody>,
    heartbeat: Heartbeat,
}

impl HttpBody for Beating {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut *self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && frame.is_data()
        {
            self.heartbeat.beat();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_watch_requests_are_watched_and_the_clock_never_goes_back() {
        assert!(is_watch(Some("watch=true&resourceVersion=5&allowWatchBookmarks=true")));
        assert!(is_watch(Some("resourceVersion=5&watch=1")));
        assert!(!is_watch(Some("limit=500")));
        assert!(!is_watch(None));
        let h = Heartbeat::default();
        assert_eq!(h.last(), None);
        h.0.store(u64::MAX / 2, Ordering::Relaxed);
        h.beat();
        assert_eq!(h.0.load(Ordering::Relaxed), u64::MAX / 2, "a later time stays");
        let (a, b) = (Heartbeat::default(), Heartbeat::default());
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
    }
}
